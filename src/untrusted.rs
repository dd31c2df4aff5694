//! Attacker-supplied text made safe to quote in an error or a log line.

/// Longest attacker-supplied value quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 80;

/// An attacker-supplied value made safe to quote in an error or log: at most 80 characters
/// (then `…`), with control and bidirectional-formatting characters escaped, so a 1 MB `kid`
/// cannot make a 1 MB error and a crafted value cannot forge log lines.
pub fn quote_untrusted(value: &str) -> String {
    let mut quoted = String::new();
    for (index, c) in value.chars().enumerate() {
        if index == MAX_QUOTED_CHARS {
            quoted.push('…');
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            quoted.extend(c.escape_unicode());
        } else {
            quoted.push(c);
        }
    }
    quoted
}

/// Characters that reorder displayed text (Unicode bidi controls), used to disguise values.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
