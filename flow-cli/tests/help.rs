//! Every command's `--help` has an example and the exit codes are documented; shell
//! completions are generated.

mod common;

use common::flow;

const COMMANDS: [&str; 13] = [
    "runs",
    "show",
    "history",
    "locals",
    "start",
    "signal",
    "cancel",
    "redrive",
    "complete",
    "export",
    "workflows",
    "graph",
    "completions",
];

#[test]
fn every_command_has_help_with_an_example() {
    for command in COMMANDS {
        let help = flow(&[command, "--help"], &[]).ok().stdout;
        assert!(
            help.contains("Example:") || help.contains("Examples:"),
            "`flow {command} --help` has no example:\n{help}"
        );
        assert!(help.contains("flow "), "{help}");
    }
    let top = flow(&["--help"], &[]).ok().stdout;
    for command in COMMANDS {
        assert!(
            top.contains(&format!("  {command} ")),
            "{command} missing:\n{top}"
        );
    }
    for code in [
        "0  done",
        "1  refused or failed",
        "2  usage error",
        "3  not found",
    ] {
        assert!(top.contains(code), "{code} missing:\n{top}");
    }
}

#[test]
fn usage_errors_exit_with_2_and_say_what_to_do() {
    let nowhere = flow(&["runs"], &[]);
    assert_eq!(nowhere.code, 2, "{}", nowhere.stderr);
    assert!(
        nowhere.stderr.contains("--url") && nowhere.stderr.contains("--journal"),
        "{}",
        nowhere.stderr
    );
    let both = flow(
        &["--url", "http://127.0.0.1:1", "--journal", "x.redb", "runs"],
        &[],
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert!(both.stderr.contains("give one"), "{}", both.stderr);
    let both = flow(
        &["runs"],
        &[
            ("FLOW_URL", "http://127.0.0.1:1"),
            ("FLOW_JOURNAL", "x.redb"),
        ],
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
    // The command line wins over the environment, whichever it names.
    let journal_wins = flow(
        &["--journal", "no-such.redb", "runs"],
        &[("FLOW_URL", "http://127.0.0.1:1")],
    );
    assert!(
        journal_wins
            .stderr
            .contains("there is no journal at `no-such.redb`"),
        "{}",
        journal_wins.stderr
    );
    let url_wins = flow(
        &["runs", "--url", "http://127.0.0.1:1"],
        &[("FLOW_JOURNAL", "no-such.redb")],
    );
    assert!(
        url_wins.stderr.contains("could not reach the flow server"),
        "{}",
        url_wins.stderr
    );
    let unknown = flow(&["frobnicate"], &[]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    let not_http = flow(&["--url", "127.0.0.1:8080", "runs"], &[]);
    assert_eq!(not_http.code, 2, "{}", not_http.stderr);
    assert!(not_http.stderr.contains("http://"), "{}", not_http.stderr);
    for command in [&["workflows"][..], &["graph", "place_order"]] {
        let args: Vec<&str> = ["--journal", "x.redb"]
            .iter()
            .chain(command)
            .copied()
            .collect();
        let refused = flow(&args, &[]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(refused.stderr.contains("needs --url"), "{}", refused.stderr);
    }
}

#[test]
fn an_unreachable_server_is_a_failure_naming_the_url() {
    // Port 1 on loopback: nothing listens there.
    let done = flow(&["--url", "http://127.0.0.1:1", "show", "x"], &[]);
    assert_eq!(done.code, 1, "{}", done.stderr);
    assert!(
        done.stderr
            .contains("could not reach the flow server at http://127.0.0.1:1"),
        "{}",
        done.stderr
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    let bash = flow(&["completions", "bash"], &[]).ok().stdout;
    assert!(bash.contains("_flow()"), "{bash:.300}");
    assert!(bash.contains("redrive"), "{bash:.300}");
    let zsh = flow(&["completions", "zsh"], &[]).ok().stdout;
    assert!(zsh.starts_with("#compdef flow"), "{zsh:.300}");
    let fish = flow(&["completions", "fish"], &[]).ok().stdout;
    assert!(fish.contains("complete -c flow"), "{fish:.300}");
    let wrong = flow(&["completions", "cmd.exe"], &[]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
}
