// `openforce-worker tokenize`: how a model's tokenizer sees text, for people
// checking their data and for tests. Reads standard input, needs only the
// tokenizer files of the model directory (tokenizer.json, tokenizer.model or
// the byte marker), never config.json or weights. Torch-free.
#ifndef OPENFORCE_WORKER_TOKENIZE_COMMAND_H_
#define OPENFORCE_WORKER_TOKENIZE_COMMAND_H_

#include <iosfwd>
#include <string>

#include "absl/status/status.h"

namespace openforce::worker {

struct TokenizeOptions {
  std::string model_dir;
  bool add_special_tokens = false;
  bool decode = false;  // ids in, text out
  bool skip_special_tokens = false;
  bool json = false;   // one JSON object instead of plain ids / text
  bool jsonl = false;  // one JSON value per input line, one result per line
};

// Encode: UTF-8 text in; ids out (space-separated), or with json
// {"ids": [...], "tokens": [...]}. Decode: ids (separated by spaces, commas
// or newlines) in; the text out, or {"text": ...}. With jsonl each input line
// is a JSON string (a JSON array of ids to decode) and each output line its
// result; a bad line prints {"line": N, "error": ...} in its place, the rest
// go on, and the status names how many lines failed.
[[nodiscard]] absl::Status RunTokenizeCommand(const TokenizeOptions& options,
                                              std::istream& in,
                                              std::ostream& out);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_TOKENIZE_COMMAND_H_
