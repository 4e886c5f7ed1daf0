/* A stand-in for libnvidia-ml.so.1 with the entry points the probe uses,
   reporting two fixed GPUs, so the dlopen path is tested on machines without an
   NVIDIA driver. */
#include <string.h>

typedef struct {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
} FakeNvmlMemory;

static const char* const kNames[] = {"NVIDIA GeForce RTX 3060",
                                     "NVIDIA A100-SXM4-80GB"};
static const unsigned long long kTotal[] = {12ull << 30, 80ull << 30};
static const unsigned long long kFree[] = {11ull << 30, 79ull << 30};
static int initialised = 0;

int nvmlInit_v2(void) {
  initialised = 1;
  return 0;
}
int nvmlShutdown(void) {
  initialised = 0;
  return 0;
}
int nvmlDeviceGetCount_v2(unsigned int* count) {
  if (!initialised) return 1;
  *count = 2;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void** device) {
  if (index >= 2) return 2;
  *device = (void*)(unsigned long)(index + 1);
  return 0;
}
int nvmlDeviceGetName(void* device, char* name, unsigned int length) {
  unsigned long index = (unsigned long)device - 1;
  strncpy(name, kNames[index], length - 1);
  name[length - 1] = 0;
  return 0;
}
typedef struct {
  unsigned int gpu;
  unsigned int memory;
} FakeNvmlUtilization;

int nvmlDeviceGetUtilizationRates(void* device, FakeNvmlUtilization* rates) {
  unsigned long index = (unsigned long)device - 1;
  rates->gpu = 37 + (unsigned int)index;
  rates->memory = 5;
  return 0;
}

int nvmlDeviceGetMemoryInfo(void* device, FakeNvmlMemory* memory) {
  unsigned long index = (unsigned long)device - 1;
  memory->total = kTotal[index];
  memory->free = kFree[index];
  memory->used = kTotal[index] - kFree[index];
  return 0;
}
