//! The filter parser: the RFC 7644 grammar by recursive descent over the lexer's tokens, with
//! Entra's extensions, nesting bounded by [`FilterLimits::max_depth`].

use serde_json::Value;

use super::lexer::{char_pos, lex, Tok, Token};
use super::{CompareOp, Filter, FilterLimits};
use crate::scim::error::ScimError;
use crate::scim::schema::{is_attr_name, AttrRef};

/// Parses a filter (RFC 7644 section 3.4.2.2). Errors are `invalidFilter` with a detail saying
/// at which character (1-based) what was expected.
pub fn parse_filter(input: &str, limits: &FilterLimits) -> Result<Filter, ScimError> {
    if input.len() > limits.max_len {
        return Err(ScimError::invalid_filter(format!(
            "the filter is {} bytes long; at most {} are accepted",
            input.len(),
            limits.max_len
        )));
    }
    let tokens = lex(input)?;
    let mut p = Parser {
        input,
        tokens,
        i: 0,
        max_depth: limits.max_depth,
    };
    if p.tokens.is_empty() {
        return Err(ScimError::invalid_filter("the filter is empty"));
    }
    let f = p.parse_or(0, false)?;
    if let Some(t) = p.peek() {
        return Err(p.error_at(
            t.start,
            format!(
                "unexpected {}; expected 'and', 'or' or the end of the filter",
                t.describe()
            ),
        ));
    }
    Ok(f)
}

/// Parses the filter inside a value path (`emails[...]`), whose attribute names are relative.
pub(crate) fn parse_value_filter(input: &str, limits: &FilterLimits) -> Result<Filter, ScimError> {
    if input.len() > limits.max_len {
        return Err(ScimError::invalid_filter(format!(
            "the filter is {} bytes long; at most {} are accepted",
            input.len(),
            limits.max_len
        )));
    }
    let tokens = lex(input)?;
    let mut p = Parser {
        input,
        tokens,
        i: 0,
        max_depth: limits.max_depth,
    };
    if p.tokens.is_empty() {
        return Err(ScimError::invalid_filter("the value filter is empty"));
    }
    let f = p.parse_or(1, true)?;
    if let Some(t) = p.peek() {
        return Err(p.error_at(
            t.start,
            format!("unexpected {}; expected 'and', 'or' or ']'", t.describe()),
        ));
    }
    Ok(f)
}

/// The byte offset of the `]` closing the `[` at byte `open` of `s`, skipping quoted strings.
pub(crate) fn closing_bracket(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i < open) {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' => depth += 1,
            ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    i: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.i)
    }

    fn peek_word_is(&self, kw: &str) -> bool {
        self.peek()
            .and_then(Token::word)
            .is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.i).cloned();
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    fn error_at(&self, byte: usize, what: String) -> ScimError {
        ScimError::invalid_filter(format!(
            "{what} (at character {})",
            char_pos(self.input, byte)
        ))
    }

    fn error_end(&self, what: &str) -> ScimError {
        ScimError::invalid_filter(format!(
            "unexpected end of the filter; expected {what} (at character {})",
            self.input.chars().count() + 1
        ))
    }

    fn check_depth(&self, depth: usize, byte: usize) -> Result<(), ScimError> {
        if depth > self.max_depth {
            return Err(self.error_at(
                byte,
                format!(
                    "the filter nests deeper than {} levels of parentheses, 'not' and value paths",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self, depth: usize, in_vp: bool) -> Result<Filter, ScimError> {
        let mut left = self.parse_and(depth, in_vp)?;
        while self.peek_word_is("or") {
            self.i += 1;
            let right = self.parse_and(depth, in_vp)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self, depth: usize, in_vp: bool) -> Result<Filter, ScimError> {
        let mut left = self.parse_unary(depth, in_vp)?;
        while self.peek_word_is("and") {
            self.i += 1;
            let right = self.parse_unary(depth, in_vp)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ScimError> {
        match self.next() {
            Some(t) if t.tok == want => Ok(()),
            Some(t) => Err(self.error_at(
                t.start,
                format!("unexpected {}; expected {what}", t.describe()),
            )),
            None => Err(self.error_end(what)),
        }
    }

    fn parse_unary(&mut self, depth: usize, in_vp: bool) -> Result<Filter, ScimError> {
        let Some(t) = self.next() else {
            return Err(self.error_end("an attribute path, '(' or 'not'"));
        };
        match &t.tok {
            Tok::LParen => {
                self.check_depth(depth + 1, t.start)?;
                let f = self.parse_or(depth + 1, in_vp)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(f)
            }
            Tok::Word(w)
                if w.eq_ignore_ascii_case("not")
                    && self.peek().is_some_and(|n| n.tok == Tok::LParen) =>
            {
                self.check_depth(depth + 1, t.start)?;
                let open = self.next().map_or(t.start, |o| o.start);
                self.check_depth(depth + 2, open)?;
                let f = self.parse_or(depth + 2, in_vp)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(Filter::Not(Box::new(f)))
            }
            Tok::Word(w) => {
                let w = w.clone();
                self.parse_attr_exp(&w, t.start, depth, in_vp)
            }
            _ => Err(self.error_at(
                t.start,
                format!(
                    "unexpected {}; expected an attribute path, '(' or 'not'",
                    t.describe()
                ),
            )),
        }
    }

    fn attr_ref(&self, word: &str, start: usize, in_vp: bool) -> Result<AttrRef, ScimError> {
        let r = AttrRef::parse(word).map_err(|e| {
            self.error_at(start, format!("expected an attribute path: {}", e.detail))
        })?;
        if r.name.is_empty() {
            return Err(self.error_at(
                start,
                format!("'{word}' is a schema URN, not an attribute path"),
            ));
        }
        if in_vp && (r.urn.is_some() || r.sub.is_some()) {
            return Err(self.error_at(
                start,
                format!("'{word}' inside a value filter must be a plain sub-attribute name"),
            ));
        }
        Ok(r)
    }

    fn parse_attr_exp(
        &mut self,
        word: &str,
        start: usize,
        depth: usize,
        in_vp: bool,
    ) -> Result<Filter, ScimError> {
        let attr = self.attr_ref(word, start, in_vp)?;
        if self.peek().is_some_and(|n| n.tok == Tok::LBracket) {
            let open = self.peek().map_or(start, |o| o.start);
            if in_vp {
                return Err(self.error_at(open, "value paths cannot be nested".into()));
            }
            if attr.sub.is_some() {
                return Err(self.error_at(
                    open,
                    format!("a value filter must follow a complex attribute, not '{word}'"),
                ));
            }
            self.check_depth(depth + 1, open)?;
            self.i += 1;
            let mut inner = self.parse_or(depth + 1, true)?;
            self.expect(Tok::RBracket, "']' or 'and'/'or'")?;
            // Entra: `emails[type eq "work"].value eq "x"`.
            if let Some(sub_word) = self
                .peek()
                .and_then(Token::word)
                .and_then(|w| w.strip_prefix('.'))
                .map(str::to_owned)
            {
                let sub_start = self.peek().map_or(start, |s| s.start);
                self.i += 1;
                if !is_attr_name(&sub_word) {
                    return Err(self.error_at(
                        sub_start,
                        format!("'{sub_word}' is not a valid sub-attribute name"),
                    ));
                }
                let sub = AttrRef {
                    urn: None,
                    name: sub_word,
                    sub: None,
                };
                let cond = self.parse_condition(sub)?;
                inner = Filter::And(Box::new(inner), Box::new(cond));
            }
            return Ok(Filter::ValuePath {
                attr,
                filter: Box::new(inner),
            });
        }
        self.parse_condition(attr)
    }

    /// `pr`, or an operator and a value, after the attribute path `attr`.
    fn parse_condition(&mut self, attr: AttrRef) -> Result<Filter, ScimError> {
        let expected_op = "an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)";
        let Some(t) = self.next() else {
            return Err(self.error_end(&format!("{expected_op} after '{attr}'")));
        };
        let op_word = match t.word() {
            Some(w) => w.to_owned(),
            None => {
                return Err(self.error_at(
                    t.start,
                    format!(
                        "unexpected {}; expected {expected_op} after '{attr}'",
                        t.describe()
                    ),
                ))
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(attr));
        }
        let Some(op) = CompareOp::parse(&op_word) else {
            return Err(self.error_at(
                t.start,
                format!("unknown operator '{op_word}'; expected {expected_op} after '{attr}'"),
            ));
        };
        let Some(v) = self.next() else {
            return Err(self.error_end(&format!("a comparison value after '{op}'")));
        };
        let value = match v.tok {
            Tok::Str(s) => Value::String(s),
            Tok::Word(w) => bare_value(&w),
            _ => {
                return Err(self.error_at(
                    v.start,
                    format!(
                        "unexpected {}; expected a comparison value after '{op}'",
                        v.describe()
                    ),
                ))
            }
        };
        Ok(Filter::Compare { attr, op, value })
    }
}

/// An unquoted value: `true`, `false`, `null` and JSON numbers keep their meaning; any other
/// word is a string (Entra sends `userName eq alice`).
fn bare_value(w: &str) -> Value {
    if w.eq_ignore_ascii_case("true") {
        Value::Bool(true)
    } else if w.eq_ignore_ascii_case("false") {
        Value::Bool(false)
    } else if w.eq_ignore_ascii_case("null") {
        Value::Null
    } else if let Ok(n) = serde_json::from_str::<serde_json::Number>(w) {
        // serde_json's own float parsing is not exact without `float_roundtrip`; std's is.
        match (
            n.is_f64(),
            w.parse::<f64>().ok().and_then(serde_json::Number::from_f64),
        ) {
            (true, Some(exact)) => Value::Number(exact),
            _ => Value::Number(n),
        }
    } else {
        Value::String(w.to_owned())
    }
}
