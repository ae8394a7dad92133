//! A small XML well-formedness check for the charts' tests: balanced tags, quoted and
//! unique attributes, escaped text; enough to catch what a hand-written SVG gets wrong.

/// Checks that `doc` is one well-formed XML element, `<svg>`: tags balanced, attributes
/// quoted and unique, text and attribute values escaped. Returns the root's attributes.
pub(super) fn check_xml(doc: &str) -> Result<Vec<(String, String)>, String> {
    if !doc.starts_with("<svg") || !doc.trim_end().ends_with("</svg>") {
        return Err("not an <svg> document".into());
    }
    let mut open: Vec<String> = Vec::new();
    let mut root = None;
    let mut rest = doc;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt], !open.is_empty())?;
        rest = &rest[lt..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").ok_or("unclosed comment")?;
            rest = &comment[end + 3..];
            continue;
        }
        let end = tag_end(rest).ok_or_else(|| format!("unclosed tag at {rest:.40}"))?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let expected = open.pop().ok_or_else(|| format!("stray </{name}>"))?;
            if name.trim() != expected {
                return Err(format!("</{name}> closes <{expected}>"));
            }
            continue;
        }
        let (body, empty) = match tag.strip_suffix('/') {
            Some(body) => (body, true),
            None => (tag, false),
        };
        let (name, attrs) = element(body)?;
        match (&root, open.is_empty()) {
            (None, _) => root = Some(attrs),
            (Some(_), true) => return Err(format!("a second root <{name}>")),
            (Some(_), false) => {}
        }
        if !empty {
            open.push(name);
        }
    }
    check_text(rest, false)?;
    if let Some(unclosed) = open.pop() {
        return Err(format!("<{unclosed}> is not closed"));
    }
    root.ok_or_else(|| "no element".into())
}

/// The index of the `>` that ends the tag `tag` starts, outside quoted values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None, '>') => return Some(i),
            (None, '<') if i > 0 => return None,
            _ => {}
        }
    }
    None
}

/// A start tag's name and attributes.
fn element(body: &str) -> Result<(String, Vec<(String, String)>), String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.');
    let name_end = body.find(|c: char| !is_name(c)).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() {
        return Err(format!("no element name in <{body}>"));
    }
    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut rest = body[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| format!("attribute without value in <{body}>"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.chars().all(is_name) || attrs.iter().any(|(k, _)| k == key) {
            return Err(format!("bad or repeated attribute {key:?} in <{name}>"));
        }
        let after = &rest[eq + 1..];
        let quote = after.chars().next().filter(|c| matches!(c, '"' | '\''));
        let quote = quote.ok_or_else(|| format!("unquoted {key} in <{name}>"))?;
        let close = after[1..].find(quote).ok_or_else(|| format!("unclosed {key}"))?;
        let value = &after[1..close + 1];
        if value.contains('<') {
            return Err(format!("'<' in {key} of <{name}>"));
        }
        check_entities(value)?;
        attrs.push((key.to_owned(), value.to_owned()));
        rest = after[close + 2..].trim_start();
    }
    Ok((name.to_owned(), attrs))
}

/// Text between tags: escaped, and only white space outside the root element.
fn check_text(text: &str, inside: bool) -> Result<(), String> {
    if !inside && !text.trim().is_empty() {
        return Err(format!("text outside the root: {text:?}"));
    }
    if text.contains('>') {
        return Err(format!("unescaped '>' in {text:?}"));
    }
    check_entities(text)
}

/// Every `&` starts one of XML's entities or a character reference.
fn check_entities(text: &str) -> Result<(), String> {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
        let reference = entity
            .strip_prefix("&#")
            .and_then(|r| r.split_once(';'))
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
        if !known.iter().any(|k| entity.starts_with(k)) && !reference {
            return Err(format!("unescaped '&' in {text:?}"));
        }
    }
    Ok(())
}

/// The contents of every `<text>` element of `svg`, as written (still escaped).
pub(super) fn texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>')?.1.split_once("</text>"))
        .map(|t| t.0)
        .collect()
}

/// Asserts that `svg` is a well-formed, sized SVG document.
pub(super) fn assert_valid(svg: &str) {
    let root = check_xml(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    for attr in ["xmlns", "width", "height", "viewBox"] {
        assert!(root.iter().any(|(k, _)| k == attr), "no {attr} on <svg>");
    }
}

#[test]
fn the_checker_rejects_malformed_xml() {
    assert!(check_xml("<svg><text>ok &amp; fine</text><g/></svg>").is_ok());
    assert!(check_xml("<svg><text>a < b</text></svg>").is_err());
    assert!(check_xml("<svg><text>a & b</text></svg>").is_err());
    assert!(check_xml("<svg><text>a > b</text></svg>").is_err());
    assert!(check_xml("<svg><g></svg>").is_err());
    assert!(check_xml("<svg><g></text></g></svg>").is_err());
    assert!(check_xml("<svg x=1></svg>").is_err());
    assert!(check_xml("<svg x=\"1\" x=\"2\"></svg>").is_err());
    assert!(check_xml("<svg></svg><svg></svg>").is_err());
    assert!(check_xml("<svg><title>a \"b\" 'c'</title></svg>").is_ok());
}
