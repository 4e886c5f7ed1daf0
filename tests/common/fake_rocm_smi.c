/* A stand-in for librocm_smi64.so reporting one fixed AMD GPU, so the dlopen
   path is tested on machines without ROCm. */
#include <stdint.h>
#include <string.h>

int rsmi_init(uint64_t flags) {
  (void)flags;
  return 0;
}
int rsmi_shut_down(void) { return 0; }
int rsmi_num_monitor_devices(uint32_t* count) {
  *count = 1;
  return 0;
}
int rsmi_dev_name_get(uint32_t index, char* name, size_t length) {
  if (index != 0) return 2;
  strncpy(name, "AMD Radeon RX 6800", length - 1);
  name[length - 1] = 0;
  return 0;
}
int rsmi_dev_memory_total_get(uint32_t index, int type, uint64_t* total) {
  if (index != 0 || type != 0) return 2;
  *total = 16ull << 30;
  return 0;
}
int rsmi_dev_memory_usage_get(uint32_t index, int type, uint64_t* used) {
  if (index != 0 || type != 0) return 2;
  *used = 1ull << 30;
  return 0;
}
