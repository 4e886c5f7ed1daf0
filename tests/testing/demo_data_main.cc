// openforce-demo-data: writes the demo's tiny base model and synthetic
// datasets (tests/testing/demo_task.h) for scripts/demo.sh, since no real
// weights can be downloaded where the demo runs.
//   openforce-demo-data --out DIR
#include <iostream>
#include <string>

#include "tests/testing/demo_task.h"

int main(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--out") {
    std::cerr << "usage: openforce-demo-data --out DIR\n";
    return 2;
  }
  try {
    const openforce::testing::DemoTaskFiles files =
        openforce::testing::WriteDemoTask(argv[2]);
    std::cout << "model     " << files.model_dir << "\n"
              << "train     " << files.train_path << "\n"
              << "held out  " << files.held_out_path << "\n";
  } catch (const std::exception& e) {
    std::cerr << "openforce-demo-data: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
