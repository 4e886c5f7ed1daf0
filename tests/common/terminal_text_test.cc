// Remote text cannot drive the terminal or forge output lines.
#include "common/terminal_text.h"

#include <gtest/gtest.h>

namespace openforce {
namespace {

TEST(TerminalTextTest, PlainTextAndUtf8PassUnchanged) {
  EXPECT_EQ(EscapeForTerminal("laptop-42 (Zoë's) 東京"),
            "laptop-42 (Zoë's) 東京");
  EXPECT_TRUE(IsTerminalSafe("laptop-42 東京"));
}

TEST(TerminalTextTest, ControlsNewlinesAndBidiOverridesBecomeVisible) {
  EXPECT_EQ(EscapeForTerminal("a\x1b[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(EscapeForTerminal("row\nw-fake  evil"), "row\\x0aw-fake  evil");
  EXPECT_EQ(EscapeForTerminal("x\ry"), "x\\x0dy");
  EXPECT_EQ(EscapeForTerminal("del\x7f"), "del\\x7f");
  EXPECT_EQ(EscapeForTerminal("\xc2\x9b"), "\\u009b");  // C1 CSI
  EXPECT_EQ(EscapeForTerminal("abc\xe2\x80\xaegpj.exe"), "abc\\u202egpj.exe");
  EXPECT_EQ(EscapeForTerminal("bad\xff\xfe"), "bad\\xff\\xfe");
  EXPECT_EQ(EscapeForTerminal("\xc0\xaf"), "\\xc0\\xaf");  // overlong '/'
  // A backslash is doubled, so an escape cannot be faked.
  EXPECT_EQ(EscapeForTerminal("\\x1b"), "\\\\x1b");
  EXPECT_FALSE(IsTerminalSafe("a\nb"));
}

}  // namespace
}  // namespace openforce
