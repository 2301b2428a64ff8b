//! Text that goes into status, Events and prompts: cut to a byte budget on a character
//! boundary (marked when cut), and short stable fingerprints of what something is about.

/// `text` cut to at most `limit` bytes on a character boundary, ending in `…` when cut.
pub fn cap(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mark = "…";
    let mut end = limit.saturating_sub(mark.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}", &text[..end])
}

/// Text from outside (a node's version label, SSH output, an annotation) made safe to show:
/// control characters become spaces, invisible and direction-changing characters are
/// dropped, runs of white space become one space, and at most `max_chars` characters are
/// kept (then `…`).
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4 + 4));
    let mut kept = 0;
    let mut space = false;
    for c in text.chars() {
        if matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            space = true;
            continue;
        }
        if kept == max_chars {
            out.push('…');
            return out;
        }
        if space && !out.is_empty() {
            if kept + 1 == max_chars {
                out.push('…');
                return out;
            }
            out.push(' ');
            kept += 1;
        }
        space = false;
        out.push(c);
        kept += 1;
    }
    out
}

/// 16 hex digits of the SHA-256 of `parts`, each ended by a NUL (so that no two lists of
/// parts join to the same input): the same in every process and build.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_character_boundaries() {
        assert_eq!(cap("short", 10), "short");
        let c = cap(&"é".repeat(10), 9);
        assert!(c.len() <= 9 && c.ends_with('…'), "{c}");
        assert_eq!(fingerprint(&["a", "bc"]).len(), 16);
        assert_ne!(fingerprint(&["a", "bc"]), fingerprint(&["ab", "c"]));
    }
}
