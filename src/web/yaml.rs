//! A small YAML document tree with line numbers, built from `saphyr-parser` events.
//!
//! The web config needs strict, precise errors ("line 3: unknown key ...") that name the
//! offending key and line, and duplicate keys must be refused the way Go's
//! `yaml.UnmarshalStrict` refuses them. A serde deserializer reports only the first error as
//! text; walking our own tree gives every check a line number and a typed error.
//!
//! Scalars are kept as written (text, style, line); typing happens in the schema walk
//! (`config.rs`), following Go's `gopkg.in/yaml.v2` rules that the exporter toolkit uses: any
//! scalar decodes into a string field, bools are YAML 1.1 (`yes`, `on`, ...), null leaves the
//! field at its default. Anchors, aliases and `<<` merge keys are resolved here.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// One YAML node. `line` is 1-based, where the node starts.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Scalar(Scalar),
    Seq { items: Vec<Node>, line: usize },
    Map { entries: Vec<(Scalar, Node)>, line: usize },
}

/// A scalar as written. `quoted` covers single, double, literal and folded styles: those are
/// always strings (never null, bool or int), as in YAML 1.1.
#[derive(Clone, Debug)]
pub(crate) struct Scalar {
    pub text: String,
    pub quoted: bool,
    /// The tag's suffix when one was given (`str` for `!!str`), for `!!null`/`!!str` overrides.
    pub tag: Option<String>,
    pub line: usize,
}

impl Scalar {
    /// YAML 1.1 null (`~`, `null`, empty), as yaml.v2 resolves it.
    pub(crate) fn is_null(&self) -> bool {
        match self.tag.as_deref() {
            Some("null") => return true,
            Some(_) => return false,
            None => {}
        }
        !self.quoted && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

impl Node {
    pub(crate) fn line(&self) -> usize {
        match self {
            Node::Scalar(s) => s.line,
            Node::Seq { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// `true` for a null scalar (an empty value such as `key:`).
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Node::Scalar(s) if s.is_null())
    }

    /// What the node is, for "want a mapping, found a list" errors.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Scalar(s) if s.is_null() => "null",
            Node::Scalar(_) => "scalar",
            Node::Seq { .. } => "list",
            Node::Map { .. } => "mapping",
        }
    }
}

/// A syntax error: the parser's message and the line it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Why a document could not be turned into a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TreeError {
    Syntax(SyntaxError),
    /// The same key twice in one mapping (Go's strict decoding refuses it).
    DuplicateKey {
        key: String,
        line: usize,
    },
    /// A mapping key that is not a scalar (`? [a, b]: c`).
    ComplexKey {
        line: usize,
    },
    /// An alias to an anchor that was never defined.
    UnknownAlias {
        line: usize,
    },
    /// `<<` whose value is not a mapping or a list of mappings.
    BadMerge {
        line: usize,
    },
}

/// Parses the first document of `text` (yaml.v2 also reads only the first). An empty stream
/// gives `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, TreeError> {
    let mut builder = Builder { anchors: HashMap::new(), stack: Vec::new(), done: None };
    for event in Parser::new_from_str(text) {
        let (event, span) = event
            .map_err(|e| TreeError::Syntax(SyntaxError { line: e.marker().line(), message: e.info().to_string() }))?;
        let line = span.start.line();
        if builder.event(event, line)? {
            break;
        }
    }
    Ok(builder.done)
}

/// A container being filled, with its anchor id.
enum Open {
    Seq {
        items: Vec<Node>,
        line: usize,
        anchor: usize,
    },
    /// `pending` holds a key waiting for its value.
    Map {
        entries: Vec<(Scalar, Node)>,
        pending: Option<Scalar>,
        line: usize,
        anchor: usize,
        merged: Vec<Node>,
    },
}

struct Builder {
    anchors: HashMap<usize, Node>,
    stack: Vec<Open>,
    done: Option<Node>,
}

impl Builder {
    /// Feeds one event; returns `true` once the first document is complete.
    fn event(&mut self, event: Event<'_>, line: usize) -> Result<bool, TreeError> {
        match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => Ok(false),
            Event::StreamEnd | Event::DocumentEnd => Ok(self.stack.is_empty() && self.done.is_some()),
            Event::Scalar(text, style, anchor, tag) => {
                let scalar = Scalar {
                    text: text.into_owned(),
                    quoted: style != ScalarStyle::Plain,
                    tag: tag.map(|t| t.suffix.clone()),
                    line,
                };
                self.finish(Node::Scalar(scalar), anchor)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or(TreeError::UnknownAlias { line })?;
                self.finish(node, 0)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Open::Seq { items: Vec::new(), line, anchor });
                Ok(false)
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map { entries: Vec::new(), pending: None, line, anchor, merged: Vec::new() });
                Ok(false)
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Open::Seq { items, line, anchor }) => self.finish(Node::Seq { items, line }, anchor),
                // The parser guarantees balanced events; treat anything else as a syntax error.
                _ => Err(unbalanced(line)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Open::Map { mut entries, line, anchor, merged, .. }) => {
                    // Merged entries never override keys written in the mapping itself.
                    for source in merged {
                        merge_into(&mut entries, source)?;
                    }
                    self.finish(Node::Map { entries, line }, anchor)
                }
                _ => Err(unbalanced(line)),
            },
        }
    }

    /// Places a completed node into its parent, or makes it the document.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<bool, TreeError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.done = Some(node);
                Ok(false)
            }
            Some(Open::Seq { items, .. }) => {
                items.push(node);
                Ok(false)
            }
            Some(Open::Map { entries, pending, merged, .. }) => {
                match pending.take() {
                    None => match node {
                        Node::Scalar(key) => *pending = Some(key),
                        other => return Err(TreeError::ComplexKey { line: other.line() }),
                    },
                    Some(key) if key.text == "<<" && !key.quoted => match node {
                        Node::Map { .. } => merged.push(node),
                        Node::Seq { items, line } => {
                            for item in items {
                                match item {
                                    Node::Map { .. } => merged.push(item),
                                    _ => return Err(TreeError::BadMerge { line }),
                                }
                            }
                        }
                        Node::Scalar(s) => return Err(TreeError::BadMerge { line: s.line }),
                    },
                    Some(key) => {
                        if entries.iter().any(|(k, _)| k.text == key.text) {
                            return Err(TreeError::DuplicateKey { key: key.text, line: key.line });
                        }
                        entries.push((key, node));
                    }
                }
                Ok(false)
            }
        }
    }
}

/// Adds `source`'s entries whose keys `entries` does not have yet.
fn merge_into(entries: &mut Vec<(Scalar, Node)>, source: Node) -> Result<(), TreeError> {
    match source {
        Node::Map { entries: more, .. } => {
            for (k, v) in more {
                if !entries.iter().any(|(e, _)| e.text == k.text) {
                    entries.push((k, v));
                }
            }
            Ok(())
        }
        other => Err(TreeError::BadMerge { line: other.line() }),
    }
}

fn unbalanced(line: usize) -> TreeError {
    TreeError::Syntax(SyntaxError { line, message: "unbalanced collection".to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<(String, usize)> {
        match node {
            Node::Map { entries, .. } => entries.iter().map(|(k, _)| (k.text.clone(), k.line)).collect(),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn lines_and_nesting() {
        let doc = parse("# c\na:\n  b: 1\n  c: [x, 'y']\nd: |\n  text\n").unwrap().unwrap();
        assert_eq!(map_keys(&doc), vec![("a".to_string(), 2), ("d".to_string(), 5)]);
        let Node::Map { entries, .. } = &doc else { unreachable!() };
        assert_eq!(map_keys(&entries[0].1), vec![("b".to_string(), 3), ("c".to_string(), 4)]);
        let Node::Scalar(d) = &entries[1].1 else { panic!() };
        assert!(d.quoted);
        assert_eq!(d.text, "text\n");
    }

    #[test]
    fn empty_and_null() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
        assert!(parse("---\n").unwrap().unwrap().is_null());
        assert!(matches!(parse("{}").unwrap(), Some(Node::Map { ref entries, .. }) if entries.is_empty()));
        let doc = parse("a:\nb: ~\nc: ''\nd: !!null x\n").unwrap().unwrap();
        let Node::Map { entries, .. } = doc else { panic!() };
        let nulls: Vec<bool> = entries.iter().map(|(_, v)| v.is_null()).collect();
        assert_eq!(nulls, vec![true, true, false, true]);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(parse("a: 1\nb: 2\na: 3\n").unwrap_err(), TreeError::DuplicateKey { key: "a".to_string(), line: 3 });
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let doc = parse("base: &b\n  x: 1\n  y: 2\nother:\n  <<: *b\n  y: 3\nlist: *b\n").unwrap().unwrap();
        let Node::Map { entries, .. } = doc else { panic!() };
        let other = &entries[1].1;
        let Node::Map { entries: o, .. } = other else { panic!() };
        let got: Vec<(&str, &str)> = o
            .iter()
            .map(|(k, v)| match v {
                Node::Scalar(s) => (k.text.as_str(), s.text.as_str()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(got, vec![("y", "3"), ("x", "1")]);
        assert!(matches!(entries[2].1, Node::Map { .. }));
        // An alias to an anchor never defined: refused (by the parser or by us), with line 1.
        match parse("a: *nope\n") {
            Err(TreeError::Syntax(SyntaxError { line, .. }) | TreeError::UnknownAlias { line }) => assert_eq!(line, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_have_lines() {
        match parse("a: 1\nb: [unclosed\nc: 2\n") {
            Err(TreeError::Syntax(e)) => assert!(e.line >= 2, "{e:?}"),
            other => panic!("{other:?}"),
        }
        match parse("a: 1\nb: 2\n c: 3\n") {
            Err(TreeError::Syntax(e)) => assert_eq!(e.line, 3, "{e:?}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("? [a]\n: b\n"), Err(TreeError::ComplexKey { line: 1 })));
    }
}
