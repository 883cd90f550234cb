//! keepalived.conf's syntax: one statement per line (a keyword and its words), `{ ... }`
//! blocks (opened at the end of a line or at the start of the next, closed anywhere, also on
//! one line: `unicast_peer { 10.0.1.12 }`), `#` and `!` comments from anywhere outside quotes,
//! `"quoted strings"`. The result is a tree of [`Stmt`]s with their lines; what is malformed
//! (an unmatched brace, an unterminated quote) is reported, never fatal.

use crate::monit::parse::At;
use std::path::Path;

/// Blocks nested deeper than this are flattened into their parent (and reported): keepalived's
/// own configurations nest three deep, and a tree this deep would be dropped recursively.
const MAX_DEPTH: usize = 32;

/// One word of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text, quotes removed.
    pub text: String,
    /// It was written in double quotes.
    pub quoted: bool,
}

impl Word {
    /// The word as written, its double quotes put back.
    pub fn written(&self) -> String {
        if self.quoted {
            format!("\"{}\"", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// A statement: its words, where it starts, and its block when it opens one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// The keyword and its arguments; empty for a block opened with no keyword before it.
    pub words: Vec<Word>,
    /// The file and line of its first word.
    pub at: At,
    /// The statements between its `{` and `}`.
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    /// The keyword ("" for a bare block).
    pub fn key(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    /// The words after the keyword.
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The keyword carries a secret (its name says pass, secret, token, key or auth:
    /// `auth_pass`, `smtp_auth_password`), so its value is never echoed.
    pub fn secret(&self) -> bool {
        let k = self.key().to_ascii_lowercase();
        ["pass", "secret", "token", "key", "auth"]
            .iter()
            .any(|s| k.contains(s))
    }

    /// The statement as written (quotes put back), without its block; the value of a
    /// [`secret`](Self::secret) keyword is `<redacted>`.
    pub fn text(&self) -> String {
        let shown = if self.secret() { 1 } else { self.words.len() };
        let mut words: Vec<String> = self.words[..shown.min(self.words.len())]
            .iter()
            .map(Word::written)
            .collect();
        if self.words.len() > shown {
            words.push("<redacted>".into());
        }
        let mut s = words.join(" ");
        if self.block.is_some() {
            s.push_str(if s.is_empty() { "{ ... }" } else { " { ... }" });
        }
        s
    }
}

/// A file's statements, and what was wrong with its syntax.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The top-level statements, in order.
    pub stmts: Vec<Stmt>,
    /// Syntax problems, each with where: read past, but worth telling.
    pub problems: Vec<(At, String)>,
}

enum Tok {
    Word(Word),
    Open,
    Close,
}

/// The tokens of one line; an unterminated quote runs to the end of the line.
fn tokens(line: &str) -> (Vec<Tok>, bool) {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut unterminated = false;
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' | '!' => break,
            '{' => {
                chars.next();
                out.push(Tok::Open);
            }
            '}' => {
                chars.next();
                out.push(Tok::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                unterminated = true;
                while let Some(d) = chars.next() {
                    if d == '"' {
                        unterminated = false;
                        break;
                    }
                    s.push(d);
                    // `\"` does not end the string: the escape is kept, for the command's
                    // words to be read as keepalived reads them.
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            s.push(e);
                        }
                    }
                }
                out.push(Tok::Word(Word {
                    text: s,
                    quoted: true,
                }));
            }
            _ => {
                let mut s = String::new();
                while let Some(&d) = chars.peek() {
                    // A comment may start anywhere outside quotes (keepalived.conf(5)).
                    if d.is_whitespace() || matches!(d, '{' | '}' | '"' | '#' | '!') {
                        break;
                    }
                    s.push(d);
                    chars.next();
                    // `\ ` is part of the word, escape kept.
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            s.push(e);
                        }
                    }
                }
                out.push(Tok::Word(Word {
                    text: s,
                    quoted: false,
                }));
            }
        }
    }
    (out, unterminated)
}

/// An open block: the statement that opened it and the statements read so far.
struct Frame {
    stmt: Stmt,
    children: Vec<Stmt>,
}

/// Parse one file's text. Never fails: every problem is in [`Parsed::problems`].
pub fn parse(text: &str, file: &Path) -> Parsed {
    let at = |line: usize| At {
        file: file.to_path_buf(),
        line,
    };
    let mut out = Parsed::default();
    let mut top: Vec<Stmt> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // `{`s past MAX_DEPTH, whose `}`s are skipped too.
    let mut flattened = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (toks, unterminated) = tokens(raw);
        if unterminated {
            out.problems.push((
                at(line),
                "unterminated quote: read to the end of the line as one string".into(),
            ));
        }
        let mut current: Option<Stmt> = None;
        for t in toks {
            let depth = stack.len();
            let children = match stack.last_mut() {
                Some(f) => &mut f.children,
                None => &mut top,
            };
            match t {
                Tok::Word(w) => current
                    .get_or_insert_with(|| Stmt {
                        words: Vec::new(),
                        at: at(line),
                        block: None,
                    })
                    .words
                    .push(w),
                Tok::Open => {
                    if depth >= MAX_DEPTH {
                        flattened += 1;
                        if flattened == 1 {
                            out.problems.push((
                                at(line),
                                format!("blocks nested more than {MAX_DEPTH} deep: the deeper ones are read as part of their parent"),
                            ));
                        }
                        continue;
                    }
                    // `vrrp_instance VI_1` on one line and `{` on the next.
                    let reopen = children
                        .last()
                        .is_some_and(|p| p.block.is_none() && !p.words.is_empty());
                    let stmt = current
                        .take()
                        .or_else(|| if reopen { children.pop() } else { None })
                        .unwrap_or_else(|| Stmt {
                            words: Vec::new(),
                            at: at(line),
                            block: None,
                        });
                    stack.push(Frame {
                        stmt,
                        children: Vec::new(),
                    });
                }
                Tok::Close => {
                    if let Some(s) = current.take() {
                        children.push(s);
                    }
                    if flattened > 0 {
                        flattened -= 1;
                        continue;
                    }
                    match stack.pop() {
                        Some(mut f) => {
                            f.stmt.block = Some(f.children);
                            match stack.last_mut() {
                                Some(p) => p.children.push(f.stmt),
                                None => top.push(f.stmt),
                            }
                        }
                        None => out
                            .problems
                            .push((at(line), "`}` closes no block: ignored".into())),
                    }
                }
            }
        }
        if let Some(s) = current {
            match stack.last_mut() {
                Some(f) => f.children.push(s),
                None => top.push(s),
            }
        }
    }
    while let Some(mut f) = stack.pop() {
        out.problems.push((
            f.stmt.at.clone(),
            "this block is never closed (a `}` is missing): read to the end of the file".into(),
        ));
        f.stmt.block = Some(f.children);
        match stack.last_mut() {
            Some(p) => p.children.push(f.stmt),
            None => top.push(f.stmt),
        }
    }
    out.stmts = top;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(stmts: &[Stmt]) -> Vec<(usize, String)> {
        stmts.iter().map(|s| (s.at.line, s.text())).collect()
    }

    #[test]
    fn blocks_comments_quotes_and_braces_anywhere() {
        let p = parse(
            r#"! Configuration File for keepalived
global_defs {
   router_id LVS_DEVEL# this node
}
vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
    interval 2
}
vrrp_instance VI_1
{
    unicast_peer { 10.0.1.12 }
    track_script {
        chk_haproxy
    }
}
"#,
            Path::new("k.conf"),
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(
            keys(&p.stmts),
            [
                (2, "global_defs { ... }".into()),
                (5, "vrrp_script chk_haproxy { ... }".into()),
                (9, "vrrp_instance VI_1 { ... }".into()),
            ]
        );
        let script = p.stmts[1].block.as_ref().unwrap();
        assert_eq!(script[0].args()[0].text, "/usr/bin/killall -0 haproxy");
        assert!(script[0].args()[0].quoted);
        let vi = p.stmts[2].block.as_ref().unwrap();
        assert_eq!(
            keys(vi),
            [
                (11, "unicast_peer { ... }".into()),
                (12, "track_script { ... }".into())
            ]
        );
        assert_eq!(
            keys(vi[0].block.as_ref().unwrap()),
            [(11, "10.0.1.12".into())]
        );
        assert_eq!(
            keys(vi[1].block.as_ref().unwrap()),
            [(13, "chk_haproxy".into())]
        );
        assert_eq!(
            keys(p.stmts[0].block.as_ref().unwrap()),
            [(3, "router_id LVS_DEVEL".into())]
        );
    }

    #[test]
    fn unbalanced_braces_garbage_and_huge_input_never_panic() {
        let p = parse(
            "}\nvrrp_instance X {\n  state MASTER\n  \"unterminated\n",
            Path::new("k"),
        );
        let problems: Vec<(usize, &str)> = p
            .problems
            .iter()
            .map(|(a, s)| (a.line, s.as_str()))
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].1.contains("closes no block") && problems[0].0 == 1);
        assert!(problems[1].1.contains("unterminated quote") && problems[1].0 == 4);
        assert!(problems[2].1.contains("never closed") && problems[2].0 == 2);
        assert_eq!(p.stmts[0].block.as_ref().unwrap().len(), 2);

        for text in [
            "{".repeat(200_000),
            "}".repeat(200_000),
            "{}".repeat(200_000),
            "\"".repeat(100_001),
            "a { b { c } } } } {{{ \u{0} \u{feff} ! \n".repeat(20_000),
            String::from_utf8_lossy(&(0..=255u8).cycle().take(1 << 20).collect::<Vec<_>>())
                .into_owned(),
        ] {
            let p = parse(&text, Path::new("garbage"));
            drop(p);
        }
        let deep = parse(
            &format!("{}x{}", "a {\n".repeat(100), "}\n".repeat(100)),
            Path::new("d"),
        );
        assert!(deep
            .problems
            .iter()
            .any(|(_, s)| s.contains("nested more than")));
        assert_eq!(deep.stmts.len(), 1);
    }

    #[test]
    fn a_keyword_carrying_a_secret_is_echoed_redacted() {
        let p = parse(
            "global_defs {\n smtp_auth_password Sup3rSecretSMTP\n auth_pass \"p w\"\n api_token t0k\n Client_Secret s\n ssh_key k\n smtp_server 10.0.0.1\n}\n",
            Path::new("k"),
        );
        let texts: Vec<String> = p.stmts[0]
            .block
            .as_ref()
            .unwrap()
            .iter()
            .map(Stmt::text)
            .collect();
        assert_eq!(
            texts,
            [
                "smtp_auth_password <redacted>",
                "auth_pass <redacted>",
                "api_token <redacted>",
                "Client_Secret <redacted>",
                "ssh_key <redacted>",
                "smtp_server 10.0.0.1",
            ]
        );
    }
}
