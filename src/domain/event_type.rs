//! Event type names (`order.created`) and the patterns subscriptions filter on (`order.*`).

/// Longest event type name, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Checks an event type name: 1 to 128 characters of letters, digits and `. _ - :`,
/// starting with a letter or digit.
pub fn validate_event_type(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_EVENT_TYPE_LEN {
        return Err(format!("event type must be 1 to {MAX_EVENT_TYPE_LEN} characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("event type `{}` must start with a letter or digit", truncated(name)));
    }
    if let Some(bad) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "._-:".contains(c))) {
        return Err(format!(
            "event type `{}` contains `{bad}`; use letters, digits and . _ - :",
            truncated(name)
        ));
    }
    Ok(())
}

/// Event types webhookd emits itself (operational events); producers cannot send them, so
/// a subscriber to `webhookd.*` can trust that they come from webhookd.
pub const RESERVED_PREFIX: &str = "webhookd.";

/// Checks an event type a producer sends: well formed, and not one of webhookd's own.
pub fn validate_producer_event_type(name: &str) -> Result<(), String> {
    validate_event_type(name)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!("event types starting with `{RESERVED_PREFIX}` are reserved for webhookd's own events"));
    }
    Ok(())
}

/// Checks a subscription filter entry: an exact event type, or a prefix ending in `.*`.
pub fn validate_event_pattern(pattern: &str) -> Result<(), String> {
    match pattern.strip_suffix(".*") {
        Some(prefix) => validate_event_type(prefix),
        None => validate_event_type(pattern),
    }
}

/// Whether a subscription with these filters wants `event_type`.
/// No filters means every event, typed or not; with filters, an untyped event is not wanted.
pub fn wants_event(patterns: &[String], event_type: Option<&str>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Some(event_type) = event_type else { return false };
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix) && event_type.len() > prefix.len(),
        None => pattern == event_type,
    })
}

/// Every filter entry that matches `event_type`: the name itself and each prefix pattern
/// (`order.item.added` → `order.item.added`, `order.*`, `order.item.*`). Lets the database
/// find matching subscriptions with one array-overlap lookup.
pub fn matching_patterns(event_type: &str) -> Vec<String> {
    let mut patterns = vec![event_type.to_owned()];
    for (at, c) in event_type.char_indices() {
        if c == '.' && at + 1 < event_type.len() {
            patterns.push(format!("{}*", &event_type[..=at]));
        }
    }
    patterns
}

fn truncated(text: &str) -> &str {
    let end = text.char_indices().nth(40).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_the_allowed_characters_pass() {
        assert!(validate_event_type("order.created").is_ok());
        assert!(validate_event_type("invoice:paid_v2-x").is_ok());
    }

    #[test]
    fn bad_names_are_explained() {
        assert!(validate_event_type("").is_err());
        assert!(validate_event_type(".hidden").unwrap_err().contains("start"));
        assert!(validate_event_type("order created").unwrap_err().contains("` `"));
        assert!(validate_event_type(&"a".repeat(129)).is_err());
        assert!(validate_event_type("order.*").is_err());
    }

    #[test]
    fn patterns_are_names_or_prefixes() {
        assert!(validate_event_pattern("order.*").is_ok());
        assert!(validate_event_pattern("order.created").is_ok());
        assert!(validate_event_pattern("*").is_err());
        assert!(validate_event_pattern("order*").is_err());
    }

    #[test]
    fn matching_patterns_agree_with_wants_event() {
        assert_eq!(matching_patterns("order.item.added"), ["order.item.added", "order.*", "order.item.*"]);
        assert_eq!(matching_patterns("ping"), ["ping"]);
        for event in ["order.item.added", "order.created", "invoice.paid", "ping", "order."] {
            for pattern in ["order.*", "order.item.*", "invoice.paid", "ping", "order.created"] {
                let by_patterns = matching_patterns(event).iter().any(|p| p == pattern);
                assert_eq!(by_patterns, wants_event(&[pattern.to_owned()], Some(event)), "{event} vs {pattern}");
            }
        }
    }

    #[test]
    fn matching_follows_exact_names_and_prefixes() {
        let patterns = vec!["order.*".to_owned(), "invoice.paid".to_owned()];
        assert!(wants_event(&patterns, Some("order.created")));
        assert!(wants_event(&patterns, Some("order.item.added")));
        assert!(wants_event(&patterns, Some("invoice.paid")));
        assert!(!wants_event(&patterns, Some("order")));
        assert!(!wants_event(&patterns, Some("invoice.paid.late")));
        assert!(!wants_event(&patterns, None));
        assert!(wants_event(&[], None));
        assert!(wants_event(&[], Some("anything")));
    }
}
