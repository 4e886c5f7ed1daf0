// A fresh temporary directory per test, removed afterwards; files under it are
// real files.
#ifndef OPENFORCE_TESTS_TESTING_TEMP_DIR_H_
#define OPENFORCE_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace openforce::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Join(const std::string& name) const { return path_ + "/" + name; }
  // Writes `contents` to Join(name), creating parent directories.
  std::string WriteFile(const std::string& name,
                        const std::string& contents) const;

 private:
  std::string path_;
};

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_TEMP_DIR_H_
