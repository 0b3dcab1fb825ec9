//! Matching a resource URI against an upstream's resource templates, for routing.

/// Whether `uri` matches an RFC 6570 `template` of simple expressions: literal parts in order,
/// each `{var}` one or more characters other than `/` (`{+var}` and `{#var}` may span `/`).
/// Written here because template matching (not expansion) is all the front needs, and routing
/// must be exact: a URI no template matches is refused.
pub(super) fn template_matches(template: &str, uri: &str) -> bool {
    // Split into literals and expressions; a malformed template matches nothing.
    let mut parts: Vec<(bool, &str)> = Vec::new(); // (is_expression, text)
    let mut rest = template;
    while let Some((literal, after)) = rest.split_once('{') {
        let Some((expression, tail)) = after.split_once('}') else {
            return false;
        };
        if !literal.is_empty() {
            parts.push((false, literal));
        }
        parts.push((true, expression));
        rest = tail;
    }
    if !rest.is_empty() {
        parts.push((false, rest));
    }
    if !parts.iter().any(|(expr, _)| *expr) {
        return template == uri;
    }
    let mut budget = MATCH_STEPS;
    matches_from(&parts, uri, &mut budget)
}

/// Most steps one template match may take; a match that needs more fails (closed).
const MATCH_STEPS: usize = 100_000;

fn matches_from(parts: &[(bool, &str)], uri: &str, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match parts.split_first() {
        None => uri.is_empty(),
        Some(((false, literal), rest)) => uri
            .strip_prefix(literal)
            .is_some_and(|tail| matches_from(rest, tail, budget)),
        Some(((true, expression), rest)) => {
            let spans_slash = expression.starts_with('+') || expression.starts_with('#');
            // Try every non-empty span the expression could take.
            uri.char_indices()
                .skip(1)
                .map(|(end, _)| end)
                .chain([uri.len()])
                .filter_map(|end| Some((uri.get(..end)?, uri.get(end..)?)))
                .take_while(|(value, _)| spans_slash || !value.contains('/'))
                .any(|(_, tail)| matches_from(rest, tail, budget))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates_match_only_what_they_describe() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/7/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template//data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/a/b/data"
        ));
        assert!(template_matches("file:///{+path}", "file:///etc/passwd"));
        assert!(!template_matches("file:///{path}", "file:///etc/passwd"));
        assert!(template_matches("test://static", "test://static"));
        assert!(!template_matches("test://static", "test://static2"));
        assert!(!template_matches("test://{broken", "test://x"));
        // Pathological templates fail closed instead of searching forever.
        let long = "a".repeat(4000);
        assert!(!template_matches("{+a}{+b}{+c}{+d}b", &long));
    }
}
