/* The C interface of the openforce_sentencepiece plugin (a shared library that
   links libsentencepiece). Debian's libsentencepiece carries its own
   protobuf 3.14 runtime and exports it; loaded into the same symbol namespace
   as libprotobuf 3.21 (which libtorch and gRPC load) the two copies bind to
   each other and crash. The plugin is therefore opened with dlopen(RTLD_LOCAL |
   RTLD_DEEPBIND) and reached only through these functions. The plugin lives in
   its own link-map namespace (dlmopen) with its own C library, so buffers it
   returns through out-parameters are released with openforce_spm_release, never
   with this namespace's free(). */
#ifndef OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_C_API_H_
#define OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_C_API_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns a processor, or NULL with *error set. */
void* openforce_spm_load(const char* path, char** error);
void openforce_spm_free(void* processor);
/* 1 on success, 0 with *error set. */
int openforce_spm_encode(void* processor, const char* text, size_t length,
                         int** ids, size_t* count, char** error);
int openforce_spm_decode(void* processor, const int* ids, size_t count,
                         char** text, size_t* length, char** error);
int openforce_spm_piece_size(void* processor);
int openforce_spm_bos_id(void* processor);
int openforce_spm_eos_id(void* processor);
/* Frees a buffer (ids, text or error) the plugin returned. */
void openforce_spm_release(void* buffer);
/* Runs SentencePieceTrainer::Train(arguments); 1 on success. */
int openforce_spm_train(const char* arguments, char** error);

#ifdef __cplusplus
}
#endif

#endif /* OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_C_API_H_ */
