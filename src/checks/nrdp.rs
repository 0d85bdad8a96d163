//! The NRDP intake's request logic, without HTTP: reading an NRDP request's form fields,
//! checking its token, parsing its XML or JSON check results into [`CheckResult`]s (with
//! `via = "nrdp"`) and rendering the response bodies the way NRDP 2.0 renders them, so that
//! `send_nrdp.sh`, `send_nrdp.py`, NCPA and other NRDP clients read them as they read NRDP's.
//!
//! NRDP answers every request with HTTP 200; success or failure is in the body:
//! `<status>0</status>` / `"status":0` or `-1` with a message such as `BAD TOKEN`.
//!
//! The request flow follows NRDP's `index.php`: `cmd=hello` is answered without a token;
//! otherwise the token must be one of the configured ones; then `cmd=submitcheck` takes the
//! check results from `XMLDATA`/`xmldata`/`xml` or `JSONDATA`/`jsondata`/`json` (XML first,
//! later names overriding earlier ones); any other command gets NRDP's plain-text answer.

use crate::checks::CheckResult;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use serde_json::Value;
use std::borrow::Cow;

/// The product name `cmd=hello` reports.
pub const PRODUCT: &str = "nrdp";
/// The NRDP version whose protocol and response bodies this module follows.
pub const VERSION: &str = "2.0.5";
/// The body NRDP sends for a missing or unknown command.
pub const NO_COMMAND_BODY: &str = "No command specified or request handler";

/// The form fields of an NRDP request (query string and urlencoded body) that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NrdpForm {
    /// `token`.
    pub token: Option<String>,
    /// `cmd`, e.g. `submitcheck` or `hello`.
    pub cmd: Option<String>,
    /// `output_type`: `TYPE_XML` or `TYPE_JSON` forces the format, as in NRDP.
    pub output_type: Option<String>,
    xml_upper: Option<String>,
    xml_lower: Option<String>,
    xml_short: Option<String>,
    json_upper: Option<String>,
    json_lower: Option<String>,
    json_short: Option<String>,
}

/// The format of a request's data and of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NrdpFormat {
    /// XML (`text/xml`), NRDP's default.
    Xml,
    /// JSON (`application/json`).
    Json,
}

impl NrdpFormat {
    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            NrdpFormat::Xml => "text/xml",
            NrdpFormat::Json => "application/json",
        }
    }
}

impl NrdpForm {
    /// Collects the fields from name/value pairs, e.g. the query string's and then the
    /// body's: as in PHP, a later pair overrides an earlier one of the same name.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut f = NrdpForm::default();
        for (k, v) in pairs {
            let slot = match k.as_ref() {
                "token" => &mut f.token,
                "cmd" => &mut f.cmd,
                "output_type" => &mut f.output_type,
                "XMLDATA" => &mut f.xml_upper,
                "xmldata" => &mut f.xml_lower,
                "xml" => &mut f.xml_short,
                "JSONDATA" => &mut f.json_upper,
                "jsondata" => &mut f.json_lower,
                "json" => &mut f.json_short,
                _ => continue,
            };
            *slot = Some(v.into());
        }
        f
    }

    /// Collects the fields of an `application/x-www-form-urlencoded` body or query string.
    pub fn from_urlencoded(body: &[u8]) -> Result<Self, NrdpError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| NrdpError::NoData(format!("the form is not urlencoded: {e}")))?;
        Ok(NrdpForm::from_pairs(pairs))
    }

    /// Sets the XML data, as `xml=` would.
    pub fn with_xml(mut self, xml: impl Into<String>) -> Self {
        self.xml_short = Some(xml.into());
        self
    }

    /// Sets the JSON data, as `json=` would.
    pub fn with_json(mut self, json: impl Into<String>) -> Self {
        self.json_short = Some(json.into());
        self
    }

    /// The XML data: `xml`, else `xmldata`, else `XMLDATA` (present, even if empty, wins).
    pub fn xml(&self) -> &str {
        first_present(&[&self.xml_short, &self.xml_lower, &self.xml_upper])
    }

    /// The JSON data: `json`, else `jsondata`, else `JSONDATA`.
    pub fn json(&self) -> &str {
        first_present(&[&self.json_short, &self.json_lower, &self.json_upper])
    }

    /// The format NRDP would choose: `output_type` if it names one, else XML if there is XML
    /// data, else JSON if there is JSON data, else XML.
    pub fn format(&self) -> NrdpFormat {
        match self.output_type.as_deref() {
            Some("TYPE_JSON") => return NrdpFormat::Json,
            Some("TYPE_XML") => return NrdpFormat::Xml,
            _ => {}
        }
        if self.xml().is_empty() && !self.json().is_empty() {
            NrdpFormat::Json
        } else {
            NrdpFormat::Xml
        }
    }
}

fn first_present<'a>(slots: &[&'a Option<String>]) -> &'a str {
    slots.iter().find_map(|s| s.as_deref()).unwrap_or_default()
}

/// Why an NRDP request was refused. [`NrdpError::message`] is NRDP's word for it, the
/// `Display` text adds what exactly is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NrdpError {
    /// No token in the request.
    #[error("NO TOKEN: the request has no token")]
    NoToken,
    /// No tokens are configured, so no request can be accepted.
    #[error("NO TOKENS: no NRDP tokens are configured")]
    NoTokensDefined,
    /// The token is not one of the configured ones.
    #[error("BAD TOKEN: the token is not a configured NRDP token")]
    BadToken,
    /// `submitcheck` without XML or JSON data.
    #[error("NO DATA: {0}")]
    NoData(String),
    /// The XML data is not well-formed or not NRDP check results; says where.
    #[error("BAD XML: {0}")]
    BadXml(String),
    /// The JSON data is not valid or not NRDP check results; says where.
    #[error("BAD JSON: {0}")]
    BadJson(String),
    /// A command other than `hello` and `submitcheck` (or none).
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
}

impl NrdpError {
    /// NRDP's message for this error, as it appears in `<message>`.
    pub fn message(&self) -> &'static str {
        match self {
            NrdpError::NoToken => "NO TOKEN",
            NrdpError::NoTokensDefined => "NO TOKENS",
            NrdpError::BadToken => "BAD TOKEN",
            NrdpError::NoData(_) => "NO DATA",
            NrdpError::BadXml(_) => "BAD XML",
            NrdpError::BadJson(_) => "BAD JSON",
            NrdpError::UnknownCommand(_) => NO_COMMAND_BODY,
        }
    }

    /// The details NRDP puts in `<information>` (data errors only).
    pub fn information(&self) -> Option<&str> {
        match self {
            NrdpError::NoData(i) | NrdpError::BadXml(i) | NrdpError::BadJson(i) => Some(i),
            _ => None,
        }
    }
}

/// Whether `presented` is one of the `configured` tokens. Every configured token is compared
/// in full, in time that depends only on the presented token's length, so the timing tells
/// nothing about how much of a token was right. Empty configured tokens never match.
pub fn token_ok(configured: &[String], presented: &str) -> bool {
    let p = presented.as_bytes();
    let mut any = 0u8;
    for t in configured.iter().map(String::as_bytes) {
        if t.is_empty() {
            continue;
        }
        let mut diff = u8::from(t.len() != p.len());
        for (i, &b) in p.iter().enumerate() {
            diff |= b ^ t[i % t.len()];
        }
        any |= u8::from(diff == 0);
    }
    any == 1 && !p.is_empty()
}

/// Checks the request's token as NRDP does: `NO TOKEN`, `NO TOKENS` or `BAD TOKEN`.
pub fn check_token(configured: &[String], presented: Option<&str>) -> Result<(), NrdpError> {
    let presented = presented.unwrap_or_default();
    if presented.is_empty() {
        return Err(NrdpError::NoToken);
    }
    if configured.iter().all(String::is_empty) {
        return Err(NrdpError::NoTokensDefined);
    }
    if token_ok(configured, presented) {
        Ok(())
    } else {
        Err(NrdpError::BadToken)
    }
}

/// What a successful request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum NrdpReply {
    /// `cmd=hello`.
    Hello,
    /// `cmd=submitcheck`: the check results, in request order.
    Submitted(Vec<CheckResult>),
}

/// Handles a request's fields: `hello` (no token needed), the token check, then
/// `submitcheck`.
pub fn handle(form: &NrdpForm, tokens: &[String]) -> Result<NrdpReply, NrdpError> {
    let cmd = form.cmd.as_deref().unwrap_or_default().to_lowercase();
    if cmd == "hello" {
        return Ok(NrdpReply::Hello);
    }
    check_token(tokens, form.token.as_deref())?;
    if cmd != "submitcheck" {
        return Err(NrdpError::UnknownCommand(cmd));
    }
    let results = match form.format() {
        NrdpFormat::Xml if !form.xml().trim().is_empty() => parse_xml(form.xml())?,
        NrdpFormat::Json if !form.json().trim().is_empty() => parse_json(form.json())?,
        _ => {
            return Err(NrdpError::NoData(
                "submitcheck needs XMLDATA, xmldata, xml, JSONDATA, jsondata or json".into(),
            ));
        }
    };
    Ok(NrdpReply::Submitted(results))
}

/// A response to send with HTTP status 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NrdpResponse {
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

/// Handles a request and renders its response; the check results (empty unless the request
/// was an accepted `submitcheck`) are for the caller to pass on.
pub fn respond(form: &NrdpForm, tokens: &[String]) -> (NrdpResponse, Vec<CheckResult>) {
    let format = form.format();
    match handle(form, tokens) {
        Ok(NrdpReply::Hello) => (render_hello(format), Vec::new()),
        Ok(NrdpReply::Submitted(results)) => (render_processed(format, results.len()), results),
        Err(e) => (render_error(format, &e), Vec::new()),
    }
}

/// A value in NRDP's response tree.
enum Node<'a> {
    Int(i64),
    Text(&'a str),
    Tree(Vec<(&'a str, Node<'a>)>),
}

fn render(format: NrdpFormat, root: &str, fields: Vec<(&str, Node<'_>)>) -> NrdpResponse {
    let tree = vec![(root, Node::Tree(fields))];
    let mut body = String::new();
    match format {
        NrdpFormat::Xml => {
            body.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
            xml_tree(&mut body, &tree, 0);
        }
        NrdpFormat::Json => json_tree(&mut body, &tree),
    }
    NrdpResponse {
        content_type: format.content_type(),
        body,
    }
}

/// NRDP's XML: one element per line, four spaces per level.
fn xml_tree(out: &mut String, fields: &[(&str, Node<'_>)], level: usize) {
    let indent = " ".repeat(level * 4);
    for (name, node) in fields {
        out.push_str(&indent);
        match node {
            Node::Int(n) => out.push_str(&format!("<{name}>{n}</{name}>\n")),
            Node::Text(t) => out.push_str(&format!("<{name}>{}</{name}>\n", xml_escape(t))),
            Node::Tree(children) => {
                out.push_str(&format!("<{name}>\n"));
                xml_tree(out, children, level + 1);
                out.push_str(&format!("{indent}</{name}>\n"));
            }
        }
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' | '\u{2019}' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// PHP's `json_encode` without flags: compact, `/` and non-ASCII escaped.
fn json_tree(out: &mut String, fields: &[(&str, Node<'_>)]) {
    out.push('{');
    for (i, (name, node)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, name);
        out.push(':');
        match node {
            Node::Int(n) => out.push_str(&n.to_string()),
            Node::Text(t) => json_string(out, t),
            Node::Tree(children) => json_tree(out, children),
        }
    }
    out.push('}');
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The answer to an accepted `submitcheck`: status 0, `OK`, and `N checks processed`.
pub fn render_processed(format: NrdpFormat, checks: usize) -> NrdpResponse {
    let output = format!("{checks} checks processed");
    render(
        format,
        "result",
        vec![
            ("status", Node::Int(0)),
            ("message", Node::Text("OK")),
            ("meta", Node::Tree(vec![("output", Node::Text(&output))])),
        ],
    )
}

/// The answer to `cmd=hello`.
pub fn render_hello(format: NrdpFormat) -> NrdpResponse {
    render(
        format,
        "response",
        vec![
            ("status", Node::Int(0)),
            ("message", Node::Text("OK")),
            ("product", Node::Text(PRODUCT)),
            ("version", Node::Text(VERSION)),
        ],
    )
}

/// The answer to a refused request: status -1, NRDP's message and, for data errors, the
/// details in `information`. An unknown command gets NRDP's plain-text line instead.
pub fn render_error(format: NrdpFormat, err: &NrdpError) -> NrdpResponse {
    if let NrdpError::UnknownCommand(_) = err {
        return NrdpResponse {
            content_type: "text/html; charset=UTF-8",
            body: NO_COMMAND_BODY.to_string(),
        };
    }
    let mut fields = vec![
        ("status", Node::Int(-1)),
        ("message", Node::Text(err.message())),
    ];
    if let Some(info) = err.information() {
        fields.push(("information", Node::Text(info)));
    }
    render(format, "result", fields)
}

/// Restores the escapes NRDP clients and Nagios use in plugin output: `\n` becomes a
/// newline and `\\` a backslash; other backslashes stay as they are.
pub fn unescape_output(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// The fields of one `checkresult`, as sent.
#[derive(Debug, Default)]
struct RawCheck {
    kind: Option<String>,
    hostname: Option<String>,
    servicename: Option<String>,
    state: Option<String>,
    output: Option<String>,
    time: Option<String>,
}

impl RawCheck {
    /// Validates one check result; `n` counts from 1, `err` builds the format's error.
    fn into_result(self, n: usize, err: fn(String) -> NrdpError) -> Result<CheckResult, NrdpError> {
        let host = self.hostname.as_deref().map(str::trim).unwrap_or_default();
        if host.is_empty() {
            return Err(err(format!("checkresult {n} has no hostname")));
        }
        let kind = self.kind.as_deref().map(str::trim).unwrap_or("host");
        let service = if kind.eq_ignore_ascii_case("service") {
            let s = self
                .servicename
                .as_deref()
                .map(str::trim)
                .unwrap_or_default();
            if s.is_empty() {
                return Err(err(format!(
                    "checkresult {n} (host '{host}') is of type service but has no servicename"
                )));
            }
            Some(s.to_string())
        } else if kind.eq_ignore_ascii_case("host") {
            None
        } else {
            return Err(err(format!(
                "checkresult {n} (host '{host}') has type '{kind}', not host or service"
            )));
        };
        let state = self.state.as_deref().map(str::trim).unwrap_or_default();
        if state.is_empty() {
            return Err(err(format!("checkresult {n} (host '{host}') has no state")));
        }
        let code: i32 = state.parse().map_err(|_| {
            err(format!(
                "checkresult {n} (host '{host}') has state '{state}', not an integer"
            ))
        })?;
        let time_ns = match self.time.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(
                t.parse::<i64>()
                    .ok()
                    .and_then(|s| s.checked_mul(1_000_000_000))
                    .ok_or_else(|| {
                        err(format!(
                            "checkresult {n} (host '{host}') has time '{t}', not Unix seconds"
                        ))
                    })?,
            ),
        };
        Ok(CheckResult {
            host: host.to_string(),
            service,
            code,
            output: unescape_output(self.output.as_deref().unwrap_or_default()).into_owned(),
            time_ns,
            ttl_ns: None,
            via: "nrdp",
        })
    }
}

/// Which `checkresult` child element text is being collected.
#[derive(Clone, Copy)]
enum Field {
    Hostname,
    Servicename,
    State,
    Output,
    Time,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        Some(match name {
            "hostname" => Field::Hostname,
            "servicename" => Field::Servicename,
            "state" => Field::State,
            "output" => Field::Output,
            "time" => Field::Time,
            _ => return None,
        })
    }

    fn slot(self, c: &mut RawCheck) -> &mut Option<String> {
        match self {
            Field::Hostname => &mut c.hostname,
            Field::Servicename => &mut c.servicename,
            Field::State => &mut c.state,
            Field::Output => &mut c.output,
            Field::Time => &mut c.time,
        }
    }
}

fn bad_xml(s: String) -> NrdpError {
    NrdpError::BadXml(s)
}

fn bad_json(s: String) -> NrdpError {
    NrdpError::BadJson(s)
}

fn type_attribute(e: &BytesStart<'_>, n: usize) -> Result<Option<String>, NrdpError> {
    for a in e.attributes() {
        let a = a.map_err(|x| bad_xml(format!("checkresult {n}: bad attribute: {x}")))?;
        if a.key.local_name().as_ref() == "type" {
            #[allow(deprecated)]
            let v = a
                .unescape_value()
                .map_err(|x| bad_xml(format!("checkresult {n}: bad type attribute: {x}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Parses NRDP's XML: a root element (`checkresults`) whose `checkresult` children each have
/// a `type` attribute (`host`, the default, or `service`) and `hostname`, `servicename`,
/// `state`, `output` and optionally `time` elements. Other elements are ignored, as NRDP does.
///
/// As in NRDP, a check result without `type` is a host check, and a host check's
/// `servicename` is ignored. Unlike NRDP, which passes anything on to Nagios, a result without
/// hostname or state, with a non-integer state or time, or of type service without
/// servicename makes the whole request fail with an error naming it (nothing is taken), and
/// spaces around hostname, servicename, state and time are dropped. `output` is kept as sent,
/// with its `\n` escapes turned into newlines ([`unescape_output`]).
pub fn parse_xml(xml: &str) -> Result<Vec<CheckResult>, NrdpError> {
    let mut reader = quick_xml::Reader::from_str(xml.trim_start());
    let mut results = Vec::new();
    // Element depth: 1 inside the root, 2 inside a checkresult, 3 inside one of its fields.
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<RawCheck> = None;
    let mut field: Option<Field> = None;
    let mut n = 0usize;
    let pos = |r: &quick_xml::Reader<&[u8]>| r.buffer_position();
    loop {
        let event = reader.read_event().map_err(|e| {
            bad_xml(format!(
                "not well-formed near byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if depth == 0 && seen_root {
                    return Err(bad_xml(format!(
                        "a second root element <{name}> at byte {}",
                        pos(&reader)
                    )));
                }
                seen_root = true;
                if depth == 1 && name == "checkresult" {
                    n += 1;
                    current = Some(RawCheck {
                        kind: type_attribute(&e, n)?,
                        ..RawCheck::default()
                    });
                } else if depth == 2 && current.is_some() {
                    field = Field::of(name);
                    if let (Some(f), Some(c)) = (field, current.as_mut()) {
                        f.slot(c).get_or_insert_with(String::new);
                    }
                } else if depth == 3 {
                    // Markup inside a field: its text is not the field's.
                    field = None;
                }
                depth += 1;
            }
            Event::Empty(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if depth == 0 {
                    if seen_root {
                        return Err(bad_xml(format!("a second root element <{name}/>")));
                    }
                    seen_root = true;
                } else if depth == 1 && name == "checkresult" {
                    n += 1;
                    let c = RawCheck {
                        kind: type_attribute(&e, n)?,
                        ..RawCheck::default()
                    };
                    results.push(c.into_result(n, bad_xml)?);
                } else if depth == 2 {
                    if let (Some(f), Some(c)) = (Field::of(name), current.as_mut()) {
                        f.slot(c).get_or_insert_with(String::new);
                    }
                } else if depth == 3 {
                    field = None;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                match depth {
                    1 => {
                        if let Some(c) = current.take() {
                            results.push(c.into_result(n, bad_xml)?);
                        }
                    }
                    2 => field = None,
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let (Some(f), Some(c)) = (field, current.as_mut()) {
                    f.slot(c)
                        .get_or_insert_with(String::new)
                        .push_str(&t.xml10_content());
                } else if depth == 0 && !t.xml10_content().trim().is_empty() {
                    return Err(bad_xml(format!(
                        "text outside the root element at byte {}",
                        pos(&reader)
                    )));
                }
            }
            Event::CData(t) => {
                if let (Some(f), Some(c)) = (field, current.as_mut()) {
                    f.slot(c)
                        .get_or_insert_with(String::new)
                        .push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => {
                        let name = r.xml10_content();
                        match resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(bad_xml(format!(
                                    "unknown entity &{name}; at byte {}",
                                    pos(&reader)
                                )));
                            }
                        }
                    }
                    Err(e) => {
                        return Err(bad_xml(format!(
                            "bad character reference at byte {}: {e}",
                            pos(&reader)
                        )));
                    }
                };
                if let (Some(f), Some(c)) = (field, current.as_mut()) {
                    f.slot(c).get_or_insert_with(String::new).push_str(&text);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        return Err(bad_xml("no root element".into()));
    }
    if depth != 0 {
        return Err(bad_xml("the document ends inside an element".into()));
    }
    Ok(results)
}

/// A JSON value NRDP would read as text: a string, or a number as written.
fn json_text(v: Option<&Value>, what: &str, n: usize) -> Result<Option<String>, NrdpError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(x)) => Ok(Some(x.to_string())),
        Some(other) => Err(bad_json(format!(
            "checkresult {n}: {what} is {}, not a string or number",
            json_kind(other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses NRDP's JSON: `{"checkresults":[{"checkresult":{"type":"service"}, "hostname":..,
/// "servicename":.., "state":.., "output":.., "time":..}, ...]}`, where `state` and `time`
/// may be strings or numbers. Validated as [`parse_xml`] validates.
pub fn parse_json(json: &str) -> Result<Vec<CheckResult>, NrdpError> {
    let doc: Value = serde_json::from_str(json).map_err(|e| bad_json(e.to_string()))?;
    let list = match doc.get("checkresults") {
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(bad_json(format!(
                "checkresults is {}, not an array",
                json_kind(other)
            )));
        }
        None => return Err(bad_json("no checkresults array".into())),
    };
    let mut results = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let n = i + 1;
        let Value::Object(obj) = item else {
            return Err(bad_json(format!(
                "checkresult {n} is {}, not an object",
                json_kind(item)
            )));
        };
        let kind = match obj.get("checkresult") {
            None | Some(Value::Null) => None,
            Some(Value::Object(attrs)) => json_text(attrs.get("type"), "checkresult.type", n)?,
            Some(other) => {
                return Err(bad_json(format!(
                    "checkresult {n}: checkresult is {}, not an object",
                    json_kind(other)
                )));
            }
        };
        let raw = RawCheck {
            kind,
            hostname: json_text(obj.get("hostname"), "hostname", n)?,
            servicename: json_text(obj.get("servicename"), "servicename", n)?,
            state: json_text(obj.get("state"), "state", n)?,
            output: json_text(obj.get("output"), "output", n)?,
            time: json_text(obj.get("time"), "time", n)?,
        };
        results.push(raw.into_result(n, bad_json)?);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<String> {
        vec!["first-token".into(), "s3cr3t".into()]
    }

    fn svc(host: &str, service: &str, code: i32, output: &str) -> CheckResult {
        CheckResult {
            host: host.into(),
            service: Some(service.into()),
            code,
            output: output.into(),
            time_ns: None,
            ttl_ns: None,
            via: "nrdp",
        }
    }

    fn host(host: &str, code: i32, output: &str) -> CheckResult {
        CheckResult {
            service: None,
            ..svc(host, "", code, output)
        }
    }

    /// What `send_nrdp.py` posts for two piped lines (its escaping: `html.escape(s, True)`).
    const PY_XML: &str = "<?xml version='1.0'?>\n<checkresults>\n<checkresult type='service' checktype='1'><hostname>web&#x27;1</hostname><servicename>HTTP &quot;/&quot;</servicename><state>2</state><output>CRITICAL - 500 &amp; &lt;slow&gt;|time=2.5s\\nline two</output></checkresult><checkresult type='host' checktype='1'><hostname>web1</hostname><state>0</state><output>UP</output></checkresult></checkresults>";

    #[test]
    fn parses_send_nrdp_py_xml() {
        let got = parse_xml(PY_XML).expect("parses");
        assert_eq!(
            got,
            vec![
                svc(
                    "web'1",
                    "HTTP \"/\"",
                    2,
                    "CRITICAL - 500 & <slow>|time=2.5s\nline two"
                ),
                host("web1", 0, "UP"),
            ]
        );
    }

    #[test]
    fn parses_the_documented_xml_format_with_cdata_time_and_defaults() {
        let xml = r#"
            <?xml version="1.0" encoding="utf-8"?>
            <checkresults>
              <!-- a comment -->
              <checkresult type="service" checktype="1">
                <hostname> db1 </hostname>
                <servicename>Disk /var</servicename>
                <state> 1 </state>
                <output><![CDATA[WARNING <90%>]]> more</output>
                <time>1700000000</time>
                <extra>ignored</extra>
              </checkresult>
              <checkresult checktype="1">
                <hostname>db2</hostname><servicename>ignored for a host check</servicename>
                <state>3</state><output/>
              </checkresult>
              <something-else/>
            </checkresults>"#;
        let got = parse_xml(xml).expect("parses");
        let mut first = svc("db1", "Disk /var", 1, "WARNING <90%> more");
        first.time_ns = Some(1_700_000_000_000_000_000);
        assert_eq!(got, vec![first, host("db2", 3, "")]);
        assert_eq!(parse_xml("<checkresults/>").expect("empty"), vec![]);
        assert_eq!(
            parse_xml("<checkresults></checkresults>").expect("empty"),
            vec![]
        );
    }

    fn xml_err(xml: &str) -> String {
        match parse_xml(xml) {
            Err(NrdpError::BadXml(info)) => info,
            other => panic!("{xml}: expected BAD XML, got {other:?}"),
        }
    }

    #[test]
    fn bad_xml_names_the_problem() {
        let cr = |inner: &str| format!("<checkresults>{inner}</checkresults>");
        let ok = "<checkresult type='host'><hostname>a</hostname><state>0</state></checkresult>";
        let info = xml_err(&cr(&format!(
            "{ok}<checkresult type='service'><servicename>x</servicename><state>0</state></checkresult>"
        )));
        assert_eq!(info, "checkresult 2 has no hostname");
        let info = xml_err(&cr(
            "<checkresult type='service'><hostname>h</hostname><state>0</state></checkresult>",
        ));
        assert!(
            info.contains("checkresult 1 (host 'h') is of type service but has no servicename"),
            "{info}"
        );
        let info = xml_err(&cr(
            "<checkresult><hostname>h</hostname><state>OK</state></checkresult>",
        ));
        assert!(info.contains("state 'OK', not an integer"), "{info}");
        let info = xml_err(&cr("<checkresult><hostname>h</hostname></checkresult>"));
        assert!(info.contains("has no state"), "{info}");
        let info = xml_err(&cr(
            "<checkresult type='router'><hostname>h</hostname><state>0</state></checkresult>",
        ));
        assert!(info.contains("type 'router'"), "{info}");
        let info = xml_err(&cr(
            "<checkresult><hostname>h</hostname><state>0</state><time>yesterday</time></checkresult>",
        ));
        assert!(info.contains("time 'yesterday'"), "{info}");
        let info = xml_err(&cr("<checkresult/>"));
        assert!(info.contains("checkresult 1 has no hostname"), "{info}");
        assert!(
            xml_err(&cr(
                "<checkresult><hostname>a&nbsp;b</hostname></checkresult>"
            ))
            .contains("&nbsp;")
        );
        assert!(xml_err("<checkresults><checkresult></checkresults>").contains("not well-formed"));
        assert!(xml_err("<checkresults>").contains("ends inside"));
        assert!(xml_err("").contains("no root"));
        assert!(xml_err("hostname=web1").contains("outside the root"));
        assert!(xml_err("<a/><b/>").contains("second root"));
        assert!(xml_err("<a>&#0;</a>").contains("character reference"));
    }

    #[test]
    fn parses_json_with_string_or_number_states() {
        let json = r#"{"checkresults":[
            {"checkresult":{"type":"service","checktype":"1"},"hostname":"web1","servicename":"load","state":"1","output":"WARNING - load 5|load=5\\nsecond line"},
            {"checkresult":{"type":"host"},"hostname":"web1","state":0,"output":"UP","time":1700000000},
            {"hostname":"web2","state":2,"output":"DOWN"}
        ]}"#;
        let got = parse_json(json).expect("parses");
        let mut up = host("web1", 0, "UP");
        up.time_ns = Some(1_700_000_000_000_000_000);
        assert_eq!(
            got,
            vec![
                svc("web1", "load", 1, "WARNING - load 5|load=5\nsecond line"),
                up,
                host("web2", 2, "DOWN"),
            ]
        );
        assert_eq!(parse_json(r#"{"checkresults":[]}"#).expect("empty"), vec![]);
    }

    fn json_err(json: &str) -> String {
        match parse_json(json) {
            Err(NrdpError::BadJson(info)) => info,
            other => panic!("{json}: expected BAD JSON, got {other:?}"),
        }
    }

    #[test]
    fn bad_json_names_the_problem() {
        assert!(json_err("{").contains("EOF"));
        assert_eq!(json_err("[]"), "no checkresults array");
        assert_eq!(
            json_err(r#"{"checkresults":{}}"#),
            "checkresults is an object, not an array"
        );
        assert_eq!(
            json_err(r#"{"checkresults":[{"hostname":"a","state":0},{"state":0}]}"#),
            "checkresult 2 has no hostname"
        );
        assert_eq!(
            json_err(r#"{"checkresults":[7]}"#),
            "checkresult 1 is a number, not an object"
        );
        assert!(
            json_err(r#"{"checkresults":[{"hostname":"a","state":[0]}]}"#)
                .contains("state is an array")
        );
        assert!(
            json_err(r#"{"checkresults":[{"hostname":"a","state":1.5}]}"#).contains("state '1.5'")
        );
        assert!(
            json_err(r#"{"checkresults":[{"checkresult":"service","hostname":"a","state":0}]}"#)
                .contains("checkresult is a string")
        );
        assert!(
            json_err(
                r#"{"checkresults":[{"checkresult":{"type":"service"},"hostname":"a","state":0}]}"#
            )
            .contains("no servicename")
        );
    }

    #[test]
    fn output_escapes_are_restored() {
        assert_eq!(unescape_output("a\\nb"), "a\nb");
        assert_eq!(unescape_output("real\nnewline"), "real\nnewline");
        assert_eq!(unescape_output("C:\\\\new \\t \\"), "C:\\new \\t \\");
        assert!(matches!(unescape_output("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn tokens_are_compared_in_full() {
        let t = tokens();
        assert!(token_ok(&t, "s3cr3t"));
        assert!(token_ok(&t, "first-token"));
        for bad in [
            "",
            "s3cr3",
            "s3cr3tt",
            "S3CR3T",
            "first-tokenfirst-token",
            "x",
        ] {
            assert!(!token_ok(&t, bad), "{bad}");
        }
        assert!(!token_ok(&[String::new()], ""));
        assert!(!token_ok(&[], "s3cr3t"));
        assert_eq!(check_token(&t, None), Err(NrdpError::NoToken));
        assert_eq!(check_token(&t, Some("")), Err(NrdpError::NoToken));
        assert_eq!(check_token(&[], Some("x")), Err(NrdpError::NoTokensDefined));
        assert_eq!(
            check_token(&[String::new()], Some("x")),
            Err(NrdpError::NoTokensDefined)
        );
        assert_eq!(check_token(&t, Some("nope")), Err(NrdpError::BadToken));
        assert_eq!(check_token(&t, Some("s3cr3t")), Ok(()));
    }

    #[test]
    fn form_fields_and_format_follow_nrdp() {
        let f = NrdpForm::from_pairs([("XMLDATA", "<a/>"), ("xml", "<b/>"), ("json", "{}")]);
        assert_eq!(f.xml(), "<b/>");
        assert_eq!(f.format(), NrdpFormat::Xml);
        let f = NrdpForm::from_pairs([("JSONDATA", "{}"), ("jsondata", "[1]")]);
        assert_eq!(f.json(), "[1]");
        assert_eq!(f.format(), NrdpFormat::Json);
        let f = NrdpForm::from_pairs([("XMLDATA", "<a/>"), ("xml", ""), ("json", "{}")]);
        assert_eq!(
            f.format(),
            NrdpFormat::Json,
            "a present but empty xml hides XMLDATA"
        );
        let f = NrdpForm::from_pairs([("xml", "<a/>"), ("output_type", "TYPE_JSON")]);
        assert_eq!(f.format(), NrdpFormat::Json);
        assert_eq!(NrdpForm::default().format(), NrdpFormat::Xml);
        let f = NrdpForm::from_pairs([("token", "a"), ("token", "b")]);
        assert_eq!(
            f.token.as_deref(),
            Some("b"),
            "later pairs override earlier ones"
        );
        let f = NrdpForm::from_urlencoded(b"token=s3cr3t&cmd=submitcheck&XMLDATA=%3Ca%2F%3E+x")
            .expect("form");
        assert_eq!(
            (f.token.as_deref(), f.cmd.as_deref(), f.xml()),
            (Some("s3cr3t"), Some("submitcheck"), "<a/> x")
        );
    }

    #[test]
    fn request_flow_follows_nrdp() {
        let t = tokens();
        let form = |pairs: &[(&str, &str)]| NrdpForm::from_pairs(pairs.iter().copied());
        assert_eq!(handle(&form(&[("cmd", "HELLO")]), &t), Ok(NrdpReply::Hello));
        assert_eq!(
            handle(&form(&[("cmd", "submitcheck")]), &t),
            Err(NrdpError::NoToken)
        );
        assert_eq!(
            handle(&form(&[("cmd", "submitcheck"), ("token", "x")]), &t),
            Err(NrdpError::BadToken)
        );
        assert_eq!(
            handle(&form(&[("cmd", "submitcmd"), ("token", "s3cr3t")]), &t),
            Err(NrdpError::UnknownCommand("submitcmd".into()))
        );
        assert_eq!(
            handle(&form(&[("token", "s3cr3t")]), &t),
            Err(NrdpError::UnknownCommand(String::new()))
        );
        let no_data = handle(&form(&[("cmd", "submitcheck"), ("token", "s3cr3t")]), &t);
        assert!(matches!(no_data, Err(NrdpError::NoData(_))), "{no_data:?}");
        let ok = handle(
            &form(&[
                ("cmd", "submitcheck"),
                ("token", "s3cr3t"),
                ("XMLDATA", PY_XML),
            ]),
            &t,
        );
        assert!(
            matches!(ok, Ok(NrdpReply::Submitted(ref r)) if r.len() == 2),
            "{ok:?}"
        );
    }

    #[test]
    fn responses_are_rendered_as_nrdp_renders_them() {
        assert_eq!(
            render_processed(NrdpFormat::Xml, 2),
            NrdpResponse {
                content_type: "text/xml",
                body: "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<result>\n    <status>0</status>\n    <message>OK</message>\n    <meta>\n        <output>2 checks processed</output>\n    </meta>\n</result>\n".into(),
            }
        );
        assert_eq!(
            render_processed(NrdpFormat::Json, 1),
            NrdpResponse {
                content_type: "application/json",
                body: r#"{"result":{"status":0,"message":"OK","meta":{"output":"1 checks processed"}}}"#.into(),
            }
        );
        assert_eq!(
            render_hello(NrdpFormat::Xml).body,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<response>\n    <status>0</status>\n    <message>OK</message>\n    <product>nrdp</product>\n    <version>2.0.5</version>\n</response>\n"
        );
        assert_eq!(
            render_hello(NrdpFormat::Json).body,
            r#"{"response":{"status":0,"message":"OK","product":"nrdp","version":"2.0.5"}}"#
        );
        assert_eq!(
            render_error(NrdpFormat::Xml, &NrdpError::BadToken).body,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<result>\n    <status>-1</status>\n    <message>BAD TOKEN</message>\n</result>\n"
        );
        assert_eq!(
            render_error(NrdpFormat::Json, &NrdpError::NoToken).body,
            r#"{"result":{"status":-1,"message":"NO TOKEN"}}"#
        );
        assert_eq!(
            render_error(NrdpFormat::Xml, &NrdpError::BadXml("<x> & 'y'".into())).body,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<result>\n    <status>-1</status>\n    <message>BAD XML</message>\n    <information>&lt;x&gt; &amp; &apos;y&apos;</information>\n</result>\n"
        );
        assert_eq!(
            render_error(NrdpFormat::Json, &NrdpError::BadJson("a/b \"é\"\n".into())).body,
            r#"{"result":{"status":-1,"message":"BAD JSON","information":"a\/b \"\u00e9\"\n"}}"#
        );
        let r = render_error(NrdpFormat::Xml, &NrdpError::UnknownCommand("x".into()));
        assert_eq!(r.body, "No command specified or request handler");
        for e in [NrdpError::NoTokensDefined, NrdpError::NoData(String::new())] {
            assert!(
                render_error(NrdpFormat::Json, &e)
                    .body
                    .contains(e.message())
            );
        }
    }

    #[test]
    fn respond_handles_a_send_nrdp_py_post_end_to_end() {
        let body = serde_urlencoded::to_string([
            ("token", "s3cr3t"),
            ("cmd", "submitcheck"),
            ("XMLDATA", PY_XML),
        ])
        .expect("encode");
        let form = NrdpForm::from_urlencoded(body.as_bytes()).expect("form");
        let (resp, results) = respond(&form, &tokens());
        assert_eq!(resp.content_type, "text/xml");
        assert!(resp.body.contains("<status>0</status>"));
        assert!(resp.body.contains("<output>2 checks processed</output>"));
        assert_eq!(results.len(), 2);
        let json = r#"{"checkresults":[{"checkresult":{"type":"host"},"hostname":"h","state":"0","output":"UP"}]}"#;
        let form =
            NrdpForm::from_pairs([("token", "s3cr3t"), ("cmd", "submitcheck")]).with_json(json);
        let (resp, results) = respond(&form, &tokens());
        assert_eq!(
            resp.body,
            r#"{"result":{"status":0,"message":"OK","meta":{"output":"1 checks processed"}}}"#
        );
        assert_eq!(results, vec![host("h", 0, "UP")]);
        let form =
            NrdpForm::from_pairs([("token", "s3cr3t"), ("cmd", "submitcheck")]).with_json("{");
        let (resp, results) = respond(&form, &tokens());
        assert!(
            resp.body
                .starts_with(r#"{"result":{"status":-1,"message":"BAD JSON","information":"#)
        );
        assert!(results.is_empty());
    }

    #[test]
    fn parsers_never_panic() {
        // Every prefix of valid documents, and bytes flipped at every position.
        let json = r#"{"checkresults":[{"checkresult":{"type":"service"},"hostname":"h","servicename":"s","state":"2","output":"x\\ny","time":"17"}]}"#;
        for doc in [PY_XML, json] {
            let bytes = doc.as_bytes();
            for end in 0..=bytes.len() {
                if let Ok(s) = std::str::from_utf8(&bytes[..end]) {
                    let _ = parse_xml(s);
                    let _ = parse_json(s);
                }
            }
            for i in 0..bytes.len() {
                for flip in [
                    b'<', b'>', b'&', b'"', b'\'', b'/', b'\\', b'\0', b'9', b'!', b'?', b'[',
                ] {
                    let mut b = bytes.to_vec();
                    b[i] = flip;
                    if let Ok(s) = std::str::from_utf8(&b) {
                        let _ = parse_xml(s);
                        let _ = parse_json(s);
                    }
                }
            }
        }
        let deep = "<a>".repeat(10_000);
        assert!(parse_xml(&deep).is_err());
        let deep_json = "[".repeat(10_000);
        assert!(parse_json(&deep_json).is_err());
    }
}
