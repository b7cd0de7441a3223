//! `iam-check [--require-calls] [DIR]`: holds every AWS call the tests recorded (under `DIR`,
//! default `$MARQUEE_IAM_LOG`) to its function's policy in `template.yaml`, and prints, as
//! markdown: the calls per function with the decision, the denied calls (then exits 1), and the
//! grants no call used. With `--require-calls` (the whole suite), no call at all is an error.
//! `scripts/test` runs it after the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use marquee_tests::iam::policy::{Decision, Policies};
use marquee_tests::iam::{Call, LOG_VARIABLE, Target, read_calls};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("iam-check: {message}");
            ExitCode::from(2)
        }
    }
}

/// `CONN#Tz1R…` → `CONN#*`: the key's kind, as the template's conditions name them.
fn key_kind(key: &str) -> String {
    match key.split_once('#') {
        Some((kind, _)) => format!("{kind}#*"),
        None => key.to_owned(),
    }
}

fn target_name(target: &Target) -> String {
    match target {
        Target::Table { index: None } => "table".to_owned(),
        Target::Table { index: Some(index) } => format!("index {index}"),
        Target::Queue => "work queue".to_owned(),
        Target::RoomsQueue => "rooms queue".to_owned(),
        Target::Secret => "token secret".to_owned(),
        Target::EventBus => "report event bus".to_owned(),
        Target::Connection { method } => format!("{method} @connections"),
        Target::Unknown { request } => request.clone(),
    }
}

fn run() -> Result<bool, String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let require_calls = args.iter().any(|a| a == "--require-calls");
    args.retain(|a| a != "--require-calls");
    let dir = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var(LOG_VARIABLE).map_err(|_| {
            format!("usage: iam-check [--require-calls] DIR (or set {LOG_VARIABLE})")
        })?),
    };
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(&template)
        .map_err(|e| format!("read {}: {e}", template.display()))?;
    let policies = Policies::from_template(&text)?;
    let calls = read_calls(&dir)?;
    if calls.is_empty() {
        // A filtered run may touch no AWS stand-in; the whole suite always does.
        let message = format!("no AWS calls were recorded under {}", dir.display());
        if require_calls {
            return Err(format!(
                "{message}: the tests did not run, or did not record"
            ));
        }
        eprintln!("{message}: nothing to check.");
        return Ok(true);
    }

    // One row per distinct (function, operation, action, target, key kinds).
    type Row = (String, String, String, String, String);
    let mut rows: BTreeMap<Row, (usize, String)> = BTreeMap::new();
    let mut denied: BTreeMap<(String, String, String, String), BTreeSet<String>> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for call in &calls {
        let kinds: BTreeSet<String> = call.leading_keys.iter().map(|k| key_kind(k)).collect();
        let kinds = kinds.into_iter().collect::<Vec<_>>().join(" ");
        let decision = policies.decide(call);
        let verdict = match &decision {
            Decision::Allowed(grants) => {
                used.extend(grants.iter().cloned());
                "allowed".to_owned()
            }
            Decision::Denied { resource, reason } => {
                denied
                    .entry((
                        call.function.clone(),
                        call.action.clone(),
                        resource
                            .clone()
                            .unwrap_or_else(|| target_name(&call.target)),
                        format!("{kinds} ({reason})"),
                    ))
                    .or_default()
                    .insert(describe(call));
                "**DENIED**".to_owned()
            }
        };
        let row = (
            call.function.clone(),
            call.operation.clone(),
            call.action.clone(),
            target_name(&call.target),
            kinds,
        );
        let entry = rows.entry(row).or_insert((0, verdict));
        entry.0 += 1;
    }

    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    say("## IAM check: every AWS call the tests made, against template.yaml".to_owned());
    say(String::new());
    say(format!(
        "{} calls recorded; {} distinct.",
        calls.len(),
        rows.len()
    ));
    say(String::new());
    say(
        "| function | operation | IAM action | resource | leading keys | calls | decision |"
            .to_owned(),
    );
    say("|---|---|---|---|---|---|---|".to_owned());
    for ((function, operation, action, target, kinds), (count, verdict)) in &rows {
        say(format!(
            "| {function} | {operation} | {action} | {target} | {kinds} | {count} | {verdict} |"
        ));
    }
    let functions_seen: BTreeSet<&str> = calls.iter().map(|c| c.function.as_str()).collect();
    let unused: Vec<_> = policies
        .grants()
        .into_iter()
        .filter(|g| !used.contains(g))
        .collect();
    say(String::new());
    say("### Grants no recorded call used".to_owned());
    say(String::new());
    if unused.is_empty() {
        say("None.".to_owned());
    } else {
        say("| function | statement | action | resource |".to_owned());
        say("|---|---|---|---|".to_owned());
        for grant in &unused {
            say(format!(
                "| {} | {} | {} | {} |",
                grant.function, grant.statement, grant.action, grant.resource
            ));
        }
    }
    for function in policies.functions.keys() {
        if !functions_seen.contains(function.as_str()) {
            say(format!("\nNo call of {function} was recorded."));
        }
    }
    if denied.is_empty() {
        say("\nNo call was denied.".to_owned());
        return Ok(true);
    }
    say(String::new());
    say("### DENIED: calls the template would refuse in AWS".to_owned());
    say(String::new());
    for ((function, action, resource, keys), tests) in &denied {
        say(format!("- {function}: {action} on {resource}, keys {keys}"));
        for test in tests.iter().take(5) {
            say(format!("  - {test}"));
        }
    }
    Ok(false)
}

fn describe(call: &Call) -> String {
    format!(
        "{} in {}",
        call.operation,
        call.test.as_deref().unwrap_or("an unnamed thread")
    )
}
