//! The filter lexer: words, JSON strings, parentheses and brackets, each with its byte offset.

use crate::scim::error::ScimError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Byte offset in the input.
    pub(super) start: usize,
}

impl Token {
    pub(super) fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
        }
    }
    pub(super) fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// 1-based character position of byte offset `byte` in `input`.
pub(super) fn char_pos(input: &str, byte: usize) -> usize {
    input.get(..byte).map_or(byte, |s| s.chars().count()) + 1
}

pub(super) fn lex(input: &str) -> Result<Vec<Token>, ScimError> {
    let mut out = Vec::new();
    let mut it = input.char_indices().peekable();
    while let Some(&(start, c)) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '(' | ')' | '[' | ']' => {
                it.next();
                let tok = match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                };
                out.push(Token { tok, start });
            }
            '"' => {
                it.next();
                let mut escaped = false;
                let mut end = None;
                for (i, c) in it.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        end = Some(i);
                        break;
                    }
                }
                let Some(end) = end else {
                    return Err(ScimError::invalid_filter(format!(
                        "unterminated string starting at character {}",
                        char_pos(input, start)
                    )));
                };
                let s = decode_string(&input[start..=end]).ok_or_else(|| {
                    ScimError::invalid_filter(format!(
                        "invalid escape in the string starting at character {}; escapes are \
                         JSON's (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                        char_pos(input, start)
                    ))
                })?;
                out.push(Token {
                    tok: Tok::Str(s),
                    start,
                });
            }
            _ => {
                let mut end = input.len();
                while let Some(&(i, c)) = it.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        end = i;
                        break;
                    }
                    it.next();
                }
                out.push(Token {
                    tok: Tok::Word(input[start..end].to_owned()),
                    start,
                });
            }
        }
    }
    Ok(out)
}

/// Decodes a quoted string with JSON escapes; raw control characters are tolerated.
fn decode_string(quoted: &str) -> Option<String> {
    let mut clean = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        if c.is_control() && (c as u32) < 0x20 {
            clean.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            clean.push(c);
        }
    }
    serde_json::from_str::<String>(&clean).ok()
}
