//! Filters (RFC 7644 section 3.4.2.2): the parser for the full grammar (`eq ne co sw ew gt ge lt
//! le pr`, `and or not`, parentheses, value paths, URN-qualified attribute paths), the canonical
//! printer, validation against a resource type, the evaluator over canonical JSON resources, and
//! the index plan a store uses to avoid full scans.
//!
//! Besides the RFC grammar the parser accepts what Microsoft Entra ID sends (see
//! `scim-interop.md`, "Queries"): `emails[type eq "work"].value eq "a@x.io"` (a value path
//! followed by a sub-attribute and a comparison, read as
//! `emails[type eq "work" and value eq "a@x.io"]`), quoted booleans (`active eq "True"`) and
//! unquoted bare words as strings (`userName eq alice`).
//!
//! Nesting (parentheses, `not`, value paths) is checked against [`FilterLimits::max_depth`]
//! before the parser recurses, so no input can overflow the stack; the input length is checked
//! against [`FilterLimits::max_len`] first, which also bounds the length of `and`/`or` chains.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ScimError;
use super::schema::{
    is_attr_name, AttrRef, AttrType, AttributeDef, ResourceType, GROUP_SCHEMA, USER_SCHEMA,
};

/// A comparison operator of RFC 7644 table 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The canonical (lower-case) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator spelled `word`, case-insensitively.
    pub fn parse(word: &str) -> Option<CompareOp> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    /// `gt ge lt le`: undefined for booleans, binaries and complex values.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    /// `co sw ew`: substring operators, defined for text.
    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed filter. Inside a [`Filter::ValuePath`] the attribute references are relative to
/// the complex attribute (`type`, `value`), without URN or sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        attr: AttrRef,
        op: CompareOp,
        value: Value,
    },
    Present(AttrRef),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    ValuePath {
        attr: AttrRef,
        filter: Box<Filter>,
    },
}

/// Bounds on what the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Longest accepted input, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting of parentheses, `not` and value paths.
    pub max_depth: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            max_len: 4096,
            max_depth: 32,
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Byte offset in the input.
    start: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
        }
    }
    fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// 1-based character position of byte offset `byte` in `input`.
fn char_pos(input: &str, byte: usize) -> usize {
    input.get(..byte).map_or(byte, |s| s.chars().count()) + 1
}

fn lex(input: &str) -> Result<Vec<Token>, ScimError> {
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

// ---------------------------------------------------------------------------------------------
// Parser

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

// ---------------------------------------------------------------------------------------------
// Printer

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, x: &Filter, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({x})")
            } else {
                write!(f, "{x}")
            }
        }
        match self {
            Filter::Compare { attr, op, value } => {
                let v = serde_json::to_string(value).map_err(|_| fmt::Error)?;
                write!(f, "{attr} {op} {v}")
            }
            Filter::Present(a) => write!(f, "{a} pr"),
            Filter::And(l, r) => {
                child(f, l, matches!(**l, Filter::Or(..)))?;
                f.write_str(" and ")?;
                child(f, r, matches!(**r, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Or(l, r) => {
                child(f, l, false)?;
                f.write_str(" or ")?;
                child(f, r, matches!(**r, Filter::Or(..)))
            }
            Filter::Not(x) => write!(f, "not ({x})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Where attribute references are resolved: the resource, or the elements of a complex
/// attribute inside a value path.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(&'a ResourceType),
    Element(&'static AttributeDef),
}

impl Filter {
    /// Checks every attribute against `rt` and every operator against the attribute's type:
    /// unknown attributes, ordering on booleans/binaries/complex values, values of the wrong
    /// type are `invalidFilter` with a detail naming the attribute.
    pub fn validate(&self, rt: &ResourceType) -> Result<(), ScimError> {
        validate_in(self, Scope::Resource(rt))
    }

    /// True when `resource` (a canonical JSON object) satisfies the filter.
    pub fn matches(&self, rt: &ResourceType, resource: &Value) -> bool {
        eval(self, Scope::Resource(rt), resource)
    }

    /// Splits the filter into equalities a store can answer by index and a residual the
    /// evaluator must still check. Call [`Filter::validate`] first.
    pub fn index_plan(&self, rt: &ResourceType) -> IndexPlan {
        let mut conjuncts = Vec::new();
        flatten_and(self, &mut conjuncts);
        let mut terms = Vec::new();
        let mut residual: Option<Filter> = None;
        for c in conjuncts {
            let keep = match index_term(c, rt) {
                Some((term, exact)) => {
                    terms.push(term);
                    !exact
                }
                None => true,
            };
            if keep {
                residual = Some(match residual {
                    None => c.clone(),
                    Some(r) => Filter::And(Box::new(r), Box::new(c.clone())),
                });
            }
        }
        IndexPlan { terms, residual }
    }
}

/// Validates the filter of a value path against the complex attribute `parent`.
pub(crate) fn validate_value_filter(
    filter: &Filter,
    parent: &'static AttributeDef,
) -> Result<(), ScimError> {
    validate_in(filter, Scope::Element(parent))
}

/// True when the element `el` of the complex attribute `parent` satisfies a value filter.
pub(crate) fn matches_element(filter: &Filter, parent: &'static AttributeDef, el: &Value) -> bool {
    eval(filter, Scope::Element(parent), el)
}

/// The attribute an attribute reference names in `scope`, and its sub-attribute if any.
fn resolve_in(
    scope: Scope<'_>,
    attr: &AttrRef,
) -> Result<
    (
        Option<&'static str>,
        &'static AttributeDef,
        Option<&'static AttributeDef>,
    ),
    ScimError,
> {
    match scope {
        Scope::Resource(rt) => {
            let r = rt
                .resolve(attr)
                .map_err(|e| ScimError::invalid_filter(e.detail))?;
            Ok((r.extension, r.attr, r.sub))
        }
        Scope::Element(parent) => match parent.sub(&attr.name) {
            Some(d) if attr.urn.is_none() && attr.sub.is_none() => Ok((None, d, None)),
            _ => Err(ScimError::invalid_filter(format!(
                "unknown sub-attribute '{attr}' of '{}'",
                parent.name
            ))),
        },
    }
}

fn validate_in(f: &Filter, scope: Scope<'_>) -> Result<(), ScimError> {
    match f {
        Filter::And(l, r) | Filter::Or(l, r) => {
            validate_in(l, scope)?;
            validate_in(r, scope)
        }
        Filter::Not(x) => validate_in(x, scope),
        Filter::Present(a) => resolve_in(scope, a).map(|_| ()),
        Filter::ValuePath { attr, filter } => {
            let (_, def, sub) = resolve_in(scope, attr)?;
            if def.ty != AttrType::Complex || sub.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "'{attr}' is not a complex attribute; a value filter needs one"
                )));
            }
            validate_in(filter, Scope::Element(def))
        }
        Filter::Compare { attr, op, value } => {
            let (_, def, sub) = resolve_in(scope, attr)?;
            let leaf = match sub {
                Some(s) => s,
                None => def,
            };
            let leaf = if leaf.ty == AttrType::Complex {
                match leaf.sub("value") {
                    Some(v) => v,
                    None => {
                        return Err(ScimError::invalid_filter(format!(
                            "'{attr}' is complex; compare one of its sub-attributes \
                             (such as '{attr}.{}')",
                            leaf.sub_attributes.first().map_or("value", |s| s.name)
                        )))
                    }
                }
            } else {
                leaf
            };
            validate_compare(attr, leaf, *op, value)
        }
    }
}

fn validate_compare(
    attr: &AttrRef,
    leaf: &AttributeDef,
    op: CompareOp,
    value: &Value,
) -> Result<(), ScimError> {
    if matches!(value, Value::Array(_) | Value::Object(_)) {
        return Err(ScimError::invalid_filter(format!(
            "the value compared with '{attr}' must be a string, number, boolean or null"
        )));
    }
    if value.is_null() {
        if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Ok(());
        }
        return Err(ScimError::invalid_filter(format!(
            "'{op}' cannot compare '{attr}' with null; only 'eq' and 'ne' can"
        )));
    }
    match leaf.ty {
        AttrType::Boolean => {
            if op.is_ordering() || op.is_substring() {
                return Err(ScimError::invalid_filter(format!(
                    "'{op}' is not defined for the boolean attribute '{attr}'; use 'eq' or 'ne'"
                )));
            }
            if as_bool(value).is_none() {
                return Err(ScimError::invalid_filter(format!(
                    "'{attr}' is boolean; expected true or false, not {value}"
                )));
            }
        }
        AttrType::Binary if op.is_ordering() => {
            return Err(ScimError::invalid_filter(format!(
                "'{op}' is not defined for the binary attribute '{attr}'"
            )));
        }
        AttrType::DateTime if op.is_ordering() && as_datetime(value).is_none() => {
            return Err(ScimError::invalid_filter(format!(
                "'{attr}' is a dateTime; '{op}' needs an RFC 3339 timestamp, not {value}"
            )));
        }
        AttrType::Integer | AttrType::Decimal if !op.is_substring() && as_f64(value).is_none() => {
            return Err(ScimError::invalid_filter(format!(
                "'{attr}' is numeric; expected a number, not {value}"
            )));
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A key of a JSON object: the canonical name, or any case of it.
pub(crate) fn get_ci<'v>(obj: &'v Value, name: &str) -> Option<&'v Value> {
    let map = obj.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The values an attribute holds in `scope` (elements for multi-valued ones), with the
/// attribute's definition; complex attributes without a sub-attribute are not flattened.
fn attr_values<'v>(
    scope: Scope<'_>,
    attr: &AttrRef,
    node: &'v Value,
) -> Option<(
    &'static AttributeDef,
    Option<&'static AttributeDef>,
    Vec<&'v Value>,
)> {
    let (ext, def, sub) = resolve_in(scope, attr).ok()?;
    let container = match ext {
        Some(urn) => get_ci(node, urn)?,
        None => node,
    };
    let raw = get_ci(container, def.name)?;
    let mut out = Vec::new();
    push_flat(raw, &mut out);
    if let Some(sd) = sub {
        let mut subs = Vec::new();
        for el in out {
            if let Some(v) = get_ci(el, sd.name) {
                push_flat(v, &mut subs);
            }
        }
        out = subs;
    }
    Some((def, sub, out))
}

fn push_flat<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    }
}

/// RFC 7644: `pr` is false for null, empty strings, empty arrays and empty objects.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        _ => true,
    }
}

fn eval(f: &Filter, scope: Scope<'_>, node: &Value) -> bool {
    match f {
        Filter::And(l, r) => eval(l, scope, node) && eval(r, scope, node),
        Filter::Or(l, r) => eval(l, scope, node) || eval(r, scope, node),
        Filter::Not(x) => !eval(x, scope, node),
        Filter::Present(a) => {
            attr_values(scope, a, node).is_some_and(|(_, _, vs)| vs.into_iter().any(is_present))
        }
        Filter::ValuePath { attr, filter } => match attr_values(scope, attr, node) {
            Some((def, None, elems)) => elems
                .into_iter()
                .any(|el| eval(filter, Scope::Element(def), el)),
            _ => false,
        },
        Filter::Compare { attr, op, value } => {
            let (leaf, values): (&AttributeDef, Vec<&Value>) = match attr_values(scope, attr, node)
            {
                None => {
                    // Absent: only `ne` and `eq null` hold.
                    return match op {
                        CompareOp::Ne => !value.is_null(),
                        CompareOp::Eq => value.is_null(),
                        _ => false,
                    };
                }
                Some((def, sub, vs)) => {
                    let leaf = sub.unwrap_or(def);
                    if leaf.ty == AttrType::Complex {
                        // `emails eq "x"`, `manager eq "id"` compare the `value`.
                        match leaf.sub("value") {
                            Some(vd) => (
                                vd,
                                vs.into_iter()
                                    .filter_map(|el| get_ci(el, "value"))
                                    .collect(),
                            ),
                            None => return false,
                        }
                    } else {
                        (leaf, vs)
                    }
                }
            };
            let present: Vec<&Value> = values.into_iter().filter(|v| is_present(v)).collect();
            if value.is_null() {
                return match op {
                    CompareOp::Eq => present.is_empty(),
                    CompareOp::Ne => !present.is_empty(),
                    _ => false,
                };
            }
            match op {
                CompareOp::Ne => !present
                    .iter()
                    .any(|v| compare_one(leaf, v, CompareOp::Eq, value)),
                _ => present.iter().any(|v| compare_one(leaf, v, *op, value)),
            }
        }
    }
}

pub(crate) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

pub(crate) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

pub(crate) fn as_datetime(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s.trim(), &Rfc3339).ok())
}

/// A scalar as text: strings as they are, numbers and booleans as JSON spells them.
pub(crate) fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn apply_order(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_text(case_exact: bool, actual: &Value, op: CompareOp, expected: &Value) -> bool {
    let (Some(mut a), Some(mut e)) = (as_text(actual), as_text(expected)) else {
        return false;
    };
    if !case_exact {
        a = a.to_lowercase();
        e = e.to_lowercase();
    }
    match op {
        CompareOp::Co => a.contains(&e),
        CompareOp::Sw => a.starts_with(&e),
        CompareOp::Ew => a.ends_with(&e),
        _ => apply_order(op, a.cmp(&e)),
    }
}

/// Compares one stored value of an attribute defined by `def` with a filter value.
fn compare_one(def: &AttributeDef, actual: &Value, op: CompareOp, expected: &Value) -> bool {
    match def.ty {
        AttrType::Boolean => match (as_bool(actual), as_bool(expected)) {
            (Some(a), Some(e)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => {
                apply_order(op, a.cmp(&e))
            }
            _ => false,
        },
        AttrType::Integer | AttrType::Decimal if !op.is_substring() => {
            match (as_f64(actual), as_f64(expected)) {
                (Some(a), Some(e)) => a.partial_cmp(&e).is_some_and(|o| apply_order(op, o)),
                _ => false,
            }
        }
        AttrType::DateTime if !op.is_substring() => {
            match (as_datetime(actual), as_datetime(expected)) {
                (Some(a), Some(e)) => apply_order(op, a.cmp(&e)),
                _ => compare_text(def.case_exact, actual, op, expected),
            }
        }
        AttrType::Complex => false,
        _ => compare_text(def.case_exact, actual, op, expected),
    }
}

// ---------------------------------------------------------------------------------------------
// Index plan

/// An attribute the store indexes for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexedAttr {
    Id,
    UserName,
    ExternalId,
    DisplayName,
    EmailValue,
    MemberValue,
}

impl IndexedAttr {
    /// Whether the store must compare this attribute case-sensitively for the term to answer
    /// the filter exactly (`id`, `externalId`, member ids); the others compare
    /// case-insensitively (`userName`, group `displayName`, email addresses).
    pub fn case_exact(self) -> bool {
        matches!(
            self,
            IndexedAttr::Id | IndexedAttr::ExternalId | IndexedAttr::MemberValue
        )
    }
}

/// `attr = value`, compared as [`IndexedAttr::case_exact`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTerm {
    pub attr: IndexedAttr,
    pub value: String,
}

/// How to answer a filter: the conjunction of `terms` narrows the candidates by index (empty:
/// full scan); `residual` is what the evaluator must still check on each candidate (`None`:
/// the terms answer the filter exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPlan {
    pub terms: Vec<IndexTerm>,
    pub residual: Option<Filter>,
}

fn flatten_and<'f>(f: &'f Filter, out: &mut Vec<&'f Filter>) {
    match f {
        Filter::And(l, r) => {
            flatten_and(l, out);
            flatten_and(r, out);
        }
        other => out.push(other),
    }
}

fn indexed(rt: &ResourceType, attr: &AttrRef) -> Option<IndexedAttr> {
    let r = rt.resolve(attr).ok()?;
    if r.extension.is_some() {
        return None;
    }
    let sub = r.sub.map(|s| s.name);
    let is_user = rt.schema.id == USER_SCHEMA;
    let is_group = rt.schema.id == GROUP_SCHEMA;
    match (r.attr.name, sub) {
        ("id", None) => Some(IndexedAttr::Id),
        ("externalId", None) => Some(IndexedAttr::ExternalId),
        ("userName", None) if is_user => Some(IndexedAttr::UserName),
        ("displayName", None) if is_group => Some(IndexedAttr::DisplayName),
        ("emails", None | Some("value")) if is_user => Some(IndexedAttr::EmailValue),
        ("members", None | Some("value")) if is_group => Some(IndexedAttr::MemberValue),
        _ => None,
    }
}

fn eq_text(op: CompareOp, value: &Value) -> Option<String> {
    if op != CompareOp::Eq {
        return None;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The index term a conjunct gives, and whether the term answers the conjunct exactly.
fn index_term(c: &Filter, rt: &ResourceType) -> Option<(IndexTerm, bool)> {
    match c {
        Filter::Compare { attr, op, value } => {
            let ia = indexed(rt, attr)?;
            let v = eq_text(*op, value)?;
            Some((IndexTerm { attr: ia, value: v }, true))
        }
        Filter::ValuePath { attr, filter } if attr.sub.is_none() => {
            let ia = indexed(rt, attr)?;
            if !matches!(ia, IndexedAttr::EmailValue | IndexedAttr::MemberValue) {
                return None;
            }
            let mut inner = Vec::new();
            flatten_and(filter, &mut inner);
            let only = inner.len() == 1;
            inner.into_iter().find_map(|f| match f {
                Filter::Compare { attr: a, op, value }
                    if a.urn.is_none()
                        && a.sub.is_none()
                        && a.name.eq_ignore_ascii_case("value") =>
                {
                    eq_text(*op, value).map(|v| (IndexTerm { attr: ia, value: v }, only))
                }
                _ => None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
