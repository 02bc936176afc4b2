//! check-plan: `cowtrace check --format json` must exit 0 and show every
//! required hook as attachable/attached.
//!
//! The plan's JSON shape is owned by `cowtrace::kernel::plan` (`AttachPlan`:
//! `hooks[]` of `{name, required, chosen: null | {...}, ...}`); we read it
//! loosely so that additive changes do not break the suite: a list of hook
//! objects (the top level, or under `hooks` / `plan` / `probes`), each with
//! a name, a `required` flag and a status: an `attached` / `ok` /
//! `available` boolean, a `status` string, or else a non-null `chosen`
//! alternative.

use serde_json::Value;

use super::Verdict;

const LIST_KEYS: [&str; 3] = ["hooks", "plan", "probes"];
const NAME_KEYS: [&str; 4] = ["name", "hook", "program", "id"];
const BOOL_STATUS_KEYS: [&str; 4] = ["attached", "ok", "available", "resolved"];
const GOOD_STATUS: [&str; 6] = [
    "attached",
    "ok",
    "available",
    "resolved",
    "ready",
    "attachable",
];

/// The hook list: the value itself, or found under one of `LIST_KEYS`,
/// descending through objects (`cowtrace check` nests it as `plan.hooks`).
fn hook_list(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => LIST_KEYS.iter().find_map(|k| hook_list(o.get(*k)?)),
        _ => None,
    }
}

/// `kprobes_supported: false` at the top, in `plan` or in `kernel`.
fn kprobes_missing(v: &Value) -> bool {
    [Some(v), v.get("plan"), v.get("kernel")]
        .into_iter()
        .flatten()
        .any(|o| o.get("kprobes_supported").and_then(Value::as_bool) == Some(false))
}

/// Messages of `problems[]` entries with severity `error`.
fn errors(v: &Value) -> Vec<&str> {
    v.get("problems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("severity").and_then(Value::as_str) == Some("error"))
        .filter_map(|p| p.get("message").and_then(Value::as_str))
        .collect()
}

/// `Some(true|false)` when the hook says whether it is usable.
fn hook_ok(h: &Value) -> Option<bool> {
    if let Some(b) = BOOL_STATUS_KEYS.iter().find_map(|k| h.get(*k)?.as_bool()) {
        return Some(b);
    }
    if let Some(status) = h.get("status") {
        let text = status.as_str().or_else(|| status.get("state")?.as_str())?;
        return Some(GOOD_STATUS.contains(&text.to_ascii_lowercase().as_str()));
    }
    h.get("chosen").map(|c| !c.is_null())
}

fn hook_name(h: &Value) -> String {
    NAME_KEYS
        .iter()
        .find_map(|k| h.get(*k)?.as_str())
        .unwrap_or("<unnamed>")
        .to_string()
}

/// The mechanism `cowtrace check --format json` chose for the `wp_fault`
/// hook (`plan.hooks[].chosen.mechanism`).
pub fn fault_mechanism(stdout: &str) -> Option<String> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    hook_list(&v)?
        .iter()
        .find(|h| hook_name(h) == "wp_fault")?
        .get("chosen")?
        .get("mechanism")?
        .as_str()
        .map(str::to_string)
}

/// `exit_code` is `None` when the process did not exit normally.
pub fn check_plan(exit_code: Option<i32>, stdout: &str) -> Verdict {
    let plan: Value = match serde_json::from_str(stdout) {
        Ok(v) => v,
        Err(e) => {
            return Verdict::failed(format!("exit {exit_code:?}; output is not JSON: {e}"));
        }
    };
    let Some(hooks) = hook_list(&plan) else {
        return Verdict::failed(format!("exit {exit_code:?}; no hook list in the plan"));
    };
    let required: Vec<&Value> = hooks
        .iter()
        .filter(|h| h.get("required").and_then(Value::as_bool) == Some(true))
        .collect();
    let mut missing = Vec::new();
    let mut unknown = Vec::new();
    for h in &required {
        match hook_ok(h) {
            Some(true) => {}
            Some(false) => missing.push(hook_name(h)),
            None => unknown.push(hook_name(h)),
        }
    }
    let mut detail = format!(
        "exit {}; {} hooks, {} required, {} ok",
        exit_code.map_or("abnormal".to_string(), |c| c.to_string()),
        hooks.len(),
        required.len(),
        required.len() - missing.len() - unknown.len()
    );
    let mut failures = Vec::new();
    if exit_code != Some(0) {
        failures.push("non-zero exit".to_string());
    }
    if kprobes_missing(&plan) {
        failures.push("kprobes not supported".to_string());
    }
    if required.is_empty() {
        failures.push("no hook is marked required".to_string());
    }
    if !missing.is_empty() {
        failures.push(format!(
            "required hooks not attached: {}",
            missing.join(", ")
        ));
    }
    if !unknown.is_empty() {
        failures.push(format!(
            "required hooks without a status: {}",
            unknown.join(", ")
        ));
    }
    if let Some(first) = errors(&plan).first().filter(|_| !failures.is_empty()) {
        failures.push(format!("first error: {first}"));
    }
    if !failures.is_empty() {
        detail.push_str(" | FAIL: ");
        detail.push_str(&failures.join("; "));
    }
    Verdict {
        ok: failures.is_empty(),
        detail,
        na: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_hooks_mechanism_is_read_from_the_plan() {
        let out = r#"{"plan":{"hooks":[
            {"name":"gup_slow","chosen":{"mechanism":"kprobe"}},
            {"name":"wp_fault","chosen":{"mechanism":"fentry"}}]}}"#;
        assert_eq!(fault_mechanism(out).as_deref(), Some("fentry"));
        let missing = r#"{"plan":{"hooks":[{"name":"wp_fault","chosen":null}]}}"#;
        assert_eq!(fault_mechanism(missing), None);
        assert_eq!(fault_mechanism("not json"), None);
    }

    #[test]
    fn passes_when_every_required_hook_is_attached() {
        let out = r#"{"kernel":"6.1.0","hooks":[
            {"name":"wp_fault","required":true,"attached":true},
            {"name":"gup_fast","required":true,"status":"attached"},
            {"name":"hugetlb","required":false,"attached":false}]}"#;
        let v = check_plan(Some(0), out);
        assert!(v.ok, "{}", v.detail);
        assert!(v.detail.contains("3 hooks, 2 required, 2 ok"));
    }

    #[test]
    fn fails_on_a_missing_required_hook_or_a_bad_exit() {
        let out = r#"[{"hook":"wp_fault","required":true,"status":"missing"},
                      {"hook":"unpin","required":true,"ok":true}]"#;
        let v = check_plan(Some(0), out);
        assert!(!v.ok);
        assert!(v.detail.contains("not attached: wp_fault"));

        let out = r#"{"plan":[{"name":"wp_fault","required":true,"attached":true}]}"#;
        assert!(check_plan(Some(0), out).ok);
        assert!(!check_plan(Some(1), out).ok);
        assert!(!check_plan(None, out).ok);
    }

    #[test]
    fn reads_the_attach_plan_shape() {
        let out = r#"{"kernel":"6.12.1","kprobes_supported":true,"notes":[],"hooks":[
            {"id":0,"name":"wp_fault","required":true,"chosen":{"index":0,"mechanism":"kprobe"},
             "rejected":[],"lost_when_missing":"x"},
            {"id":9,"name":"hugetlb","required":false,"chosen":null,"rejected":[],
             "lost_when_missing":"y"}]}"#;
        let v = check_plan(Some(0), out);
        assert!(v.ok, "{}", v.detail);
        let missing = out.replace(
            r#""chosen":{"index":0,"mechanism":"kprobe"}"#,
            r#""chosen":null"#,
        );
        let v = check_plan(Some(0), &missing);
        assert!(
            !v.ok && v.detail.contains("not attached: wp_fault"),
            "{}",
            v.detail
        );
        let no_kprobes = out.replace(
            r#""kprobes_supported":true"#,
            r#""kprobes_supported":false"#,
        );
        assert!(!check_plan(Some(0), &no_kprobes).ok);
    }

    /// The shape `cowtrace check --format json` prints (`CheckReport`).
    #[test]
    fn reads_the_check_report_shape() {
        let ok = r#"{"kernel":{"release":"6.1.0-50-amd64","btf":true,"kprobes_supported":true},
            "problems":[{"severity":"warning","message":"optional hook thp_wp not attached"}],
            "layout":{},"constants":[],"constants_error":null,
            "plan":{"kernel":"6.1.0-50-amd64","kprobes_supported":true,"notes":[],"hooks":[
              {"id":0,"name":"wp_fault","required":true,"chosen":{"index":1},"rejected":[]},
              {"id":1,"name":"thp_wp","required":false,"chosen":null,"rejected":[]}]}}"#;
        let v = check_plan(Some(0), ok);
        assert!(v.ok, "{}", v.detail);
        assert!(
            v.detail.contains("2 hooks, 1 required, 1 ok"),
            "{}",
            v.detail
        );

        let broken = ok
            .replace(r#""chosen":{"index":1}"#, r#""chosen":null"#)
            .replace(
                r#""kprobes_supported":true,"notes""#,
                r#""kprobes_supported":false,"notes""#,
            )
            .replace(r#""severity":"warning""#, r#""severity":"error""#);
        let v = check_plan(Some(1), &broken);
        assert!(!v.ok);
        for needle in [
            "non-zero exit",
            "kprobes not supported",
            "not attached: wp_fault",
            "first error: optional hook",
        ] {
            assert!(v.detail.contains(needle), "{needle}: {}", v.detail);
        }
    }

    #[test]
    fn fails_on_unreadable_or_statusless_plans() {
        assert!(!check_plan(Some(0), "").ok);
        assert!(!check_plan(Some(0), r#"{"something":1}"#).ok);
        assert!(
            !check_plan(
                Some(0),
                r#"[{"name":"x","required":false,"attached":true}]"#
            )
            .ok
        );
        let v = check_plan(Some(0), r#"[{"name":"x","required":true}]"#);
        assert!(!v.ok && v.detail.contains("without a status: x"));
    }
}
