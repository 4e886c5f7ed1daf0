// Text from remote parties (worker display names, reasons, messages) made
// safe to print on a terminal: no control characters, escape sequences,
// newlines or bidirectional overrides can reach it, so a hostile string can
// neither forge output lines nor drive the terminal.
#ifndef OPENFORCE_COMMON_TERMINAL_TEXT_H_
#define OPENFORCE_COMMON_TERMINAL_TEXT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace openforce {

// Printable ASCII and well-formed UTF-8 pass unchanged; C0 and C1 controls,
// DEL, Unicode bidi controls and bytes that are not valid UTF-8 become
// visible escapes (\x1b, \u202e), and a backslash becomes "\\" so that
// escapes cannot be faked.
std::string EscapeForTerminal(absl::string_view text);

// True when `text` has nothing EscapeForTerminal() would change.
bool IsTerminalSafe(absl::string_view text);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_TERMINAL_TEXT_H_
