//! Tests of `.env` parsing, import planning and file rewriting.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

use keyport_core::envimport::base_urls::{BaseUrlError, BaseUrlSetting};
use keyport_core::envimport::parse::{parse, Assignment, ParseError, ParseProblem, Quote};
use keyport_core::envimport::plan::{plan, Found, ImportPlan, Notice, Origin, PlanError, Variable};
use keyport_core::envimport::rewrite::{backup_path, rewrite_file, splice, RewriteError};
use keyport_core::envimport::{EnvFile, ReadError};
use keyport_core::secret::ExposeSecret;
use keyport_core::vault::KeyProblem;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroize::Zeroizing;

fn values(text: &str) -> Vec<(String, String)> {
    parse(text)
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.value.expose_secret().to_owned()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn parse_error(text: &str) -> ParseError {
    parse(text).unwrap_err()
}

fn found(text: &str) -> Vec<Found> {
    EnvFile::from_bytes(Path::new(".env"), Zeroizing::new(text.as_bytes().to_vec()))
        .unwrap()
        .found()
}

fn line(name: &str, line: usize) -> Variable {
    Variable {
        name: name.into(),
        origin: Origin::Line(line),
    }
}

const REAL_LOOKING: &str = "\
# Provider keys for the KaibanJS team
export OPENAI_API_KEY=sk-proj-CANARY-openai-000001   # rotated monthly

ANTHROPIC_API_KEY='sk-ant-CANARY-anthropic-000002'
VITE_GEMINI_API_KEY=\"AIzaCANARY-gemini-000003\"
DATABASE_URL=postgres://user:pw@localhost/db
EMPTY_ONE=
";

#[test]
fn parse_reads_every_syntax_form() {
    let text = "\
# comment line
   # indented comment

export EXPORTED=exported-value
SPACED = spaced value   
INLINE=value # a comment
HASH=abc#def
HASH_START=#not-a-comment
BLANK_THEN_HASH= #only a comment
EMPTY=
EMPTY_DOUBLE=\"\"
SINGLE='literal \\n $HOME # not a comment'
DOUBLE=\"line1\\nline2 \\\"quoted\\\" back\\\\slash \\q\"
TICK=`tick 'and' \"quotes\"`
QUOTED_COMMENT='v' # trailing comment
QUOTED_HASH=\"v\"#comment
TAB\t=\ttabbed\t
export=not-a-keyword
dotted.name-1=x
_LEADING=y
";
    assert_eq!(
        values(text),
        pairs(&[
            ("EXPORTED", "exported-value"),
            ("SPACED", "spaced value"),
            ("INLINE", "value"),
            ("HASH", "abc"),
            ("HASH_START", ""),
            ("BLANK_THEN_HASH", ""),
            ("EMPTY", ""),
            ("EMPTY_DOUBLE", ""),
            ("SINGLE", "literal \\n $HOME # not a comment"),
            ("DOUBLE", "line1\nline2 \\\"quoted\\\" back\\\\slash \\q"),
            ("TICK", "tick 'and' \"quotes\""),
            ("QUOTED_COMMENT", "v"),
            ("QUOTED_HASH", "v"),
            ("TAB", "tabbed"),
            ("export", "not-a-keyword"),
            ("dotted.name-1", "x"),
            ("_LEADING", "y"),
        ])
    );
}

#[test]
fn parse_reports_quote_style_and_lines() {
    let assignments = parse("A=1\n\n# c\nB='2'\nC=\"3\"\nD=`4`\n").unwrap();
    let summary: Vec<(&str, usize, Quote)> = assignments
        .iter()
        .map(|a| (a.name.as_str(), a.line, a.quote))
        .collect();
    assert_eq!(
        summary,
        [
            ("A", 1, Quote::None),
            ("B", 4, Quote::Single),
            ("C", 5, Quote::Double),
            ("D", 6, Quote::Backtick),
        ]
    );
}

#[test]
fn raw_value_range_covers_only_the_value() {
    let text = "export  KEY = \"inner\" # c\nOTHER=  plain  # c\nQ='x'\n";
    let assignments = parse(text).unwrap();
    let raw: Vec<&str> = assignments
        .iter()
        .map(|a| &text[a.raw_value.clone()])
        .collect();
    assert_eq!(raw, ["inner", "plain", "x"]);
}

#[test]
fn crlf_file_parses_like_lf_file() {
    let lf = "# c\nA=1\nB='two'\nC=\"th\\nree\" # c\nD=four  \n\nE=\n";
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(values(&crlf), values(lf));

    let assignments = parse(&crlf).unwrap();
    for assignment in &assignments {
        assert!(
            !crlf[assignment.raw_value.clone()].contains('\r'),
            "{}",
            assignment.name
        );
    }
    let lines: Vec<usize> = assignments.iter().map(|a| a.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 7]);
}

/// Expected values come from dotenv 16.6.1's `parse` on the same text.
#[test]
fn lone_carriage_return_ends_a_line() {
    let text =
        "OPENAI_API_KEY=sk-1\n# old\rOPENAI_API_KEY=sk-HIDDEN\rB=2\rC='x\ry'\rD=\"p\\rq\r2\"\rE=3";
    assert_eq!(
        values(text),
        pairs(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_API_KEY", "sk-HIDDEN"),
            ("B", "2"),
            ("C", "x\ny"),
            ("D", "p\rq\n2"),
            ("E", "3"),
        ])
    );
    let lines: Vec<usize> = parse(text).unwrap().iter().map(|a| a.line).collect();
    assert_eq!(lines, [1, 3, 4, 5, 7, 9]);
}

/// Expected values come from dotenv 16.6.1's `parse` on the same text.
#[test]
fn unicode_blanks_are_trimmed_like_dotenv() {
    let text = "A=abc\u{a0}\nB=\u{a0}abc\nC=abc\u{b}\nD=\u{a0}\"q v\"\nexport\u{a0}E=1\nF\u{3000}=\u{3000}x\u{3000}# c\n";
    assert_eq!(
        values(text),
        pairs(&[
            ("A", "abc"),
            ("B", "abc"),
            ("C", "abc"),
            ("D", "q v"),
            ("E", "1"),
            ("F", "x"),
        ])
    );
}

#[test]
fn final_line_without_line_break_is_read() {
    assert_eq!(values("A=1\nB=2"), pairs(&[("A", "1"), ("B", "2")]));
    assert_eq!(values("A=1\r\nB=2\r"), pairs(&[("A", "1"), ("B", "2")]));
}

#[test]
fn byte_order_mark_is_skipped() {
    let text = "\u{feff}OPENAI_API_KEY=sk-1\nB=2\n";
    let assignments = parse(text).unwrap();
    assert_eq!(assignments[0].name, "OPENAI_API_KEY");
    assert_eq!(assignments[0].line, 1);
    assert_eq!(assignments[1].line, 2);
    assert_eq!(&text[assignments[0].raw_value.clone()], "sk-1");

    let comment_first = "\u{feff}# c\r\nA=1\r\n";
    assert_eq!(values(comment_first), pairs(&[("A", "1")]));
}

#[test]
fn multi_line_values_keep_line_numbers_right() {
    let text = "A=\"first\nsecond\"\nB='x\r\ny'\nC=3\nD=\"a\\\nb\"\n";
    let assignments = parse(text).unwrap();
    let summary: Vec<(&str, usize, String)> = assignments
        .iter()
        .map(|a| (a.name.as_str(), a.line, a.value.expose_secret().to_owned()))
        .collect();
    assert_eq!(
        summary,
        [
            ("A", 1, "first\nsecond".to_owned()),
            ("B", 3, "x\ny".to_owned()),
            ("C", 5, "3".to_owned()),
            ("D", 6, "a\\\nb".to_owned()),
        ]
    );
    let error = parse_error("A=\"x\ny\"\nB=1\nnot a line\n");
    assert_eq!(error.line, 4);
}

#[test]
fn quoted_value_may_start_on_a_later_line() {
    // Each result is what dotenv 16.6.1's parse() returns for the text.
    let summary = |text: &str| -> Vec<(String, usize, String)> {
        parse(text)
            .unwrap()
            .iter()
            .map(|a| (a.name.clone(), a.line, a.value.expose_secret().to_owned()))
            .collect()
    };
    let entry = |name: &str, line: usize, value: &str| (name.to_owned(), line, value.to_owned());
    assert_eq!(
        summary("KEY=\n\"B\"\nX=1\n"),
        [entry("KEY", 1, "B"), entry("X", 3, "1")]
    );
    assert_eq!(
        summary("KEY=  \n\n  'multi\nline'\nX=1"),
        [entry("KEY", 1, "multi\nline"), entry("X", 5, "1")]
    );
    assert_eq!(
        summary("export KEY=\r\n`B` # note\r\nX=2"),
        [entry("KEY", 1, "B"), entry("X", 3, "2")]
    );
    // A name on the next line is the next assignment, not a value.
    assert_eq!(
        summary("KEY=\nOTHER=\"x\"\n"),
        [entry("KEY", 1, ""), entry("OTHER", 2, "x")]
    );

    // The range points at the value on its own line, for the rewrite.
    let text = "KEY=\n\n  \"sk-CANARY-later\"\n";
    let assignment = &parse(text).unwrap()[0];
    assert_eq!(&text[assignment.raw_value.clone()], "sk-CANARY-later");

    // Where dotenv reads an empty value and skips the next line, that line
    // is reported.
    for text in [
        "KEY=\n# comment\n\"B\"\n",
        "KEY=\n\"B\" trailing\nX=1\n",
        "KEY= # comment\n\"B\"\n",
        "KEY=\n\"open\nX=1\n",
    ] {
        let error = parse_error(text);
        assert_eq!(error.problem, ParseProblem::MissingEquals, "{text:?}");
    }
    assert_eq!(parse_error("KEY=\n# comment\n\"B\"\n").line, 3);
    assert_eq!(parse_error("KEY=\n\"B\" trailing\nX=1\n").line, 2);
}

#[test]
fn malformed_lines_name_their_line() {
    let cases: [(&str, usize, ParseProblem); 9] = [
        ("A=1\nJUSTTEXT\n", 2, ParseProblem::MissingEquals),
        ("A=1\n\nexport B\n", 3, ParseProblem::MissingEquals),
        ("1ABC=x\n", 1, ParseProblem::InvalidName),
        ("MY VAR=x\n", 1, ParseProblem::InvalidName),
        ("=x\n", 1, ParseProblem::InvalidName),
        ("KÉY=x\n", 1, ParseProblem::InvalidName),
        (
            "A=1\nB=\"open\nC=2\n",
            2,
            ParseProblem::UnterminatedQuote(Quote::Double),
        ),
        (
            "A='open\n",
            1,
            ParseProblem::UnterminatedQuote(Quote::Single),
        ),
        ("A=1\r\nB='x' y\r\n", 2, ParseProblem::TextAfterQuote),
    ];
    for (text, line, problem) in cases {
        let error = parse_error(text);
        assert_eq!(error.line, line, "{text:?}");
        assert_eq!(error.problem, problem, "{text:?}");
        assert!(
            error.to_string().starts_with(&format!("line {line}: ")),
            "{error}"
        );
    }
}

#[test]
fn errors_never_quote_the_file() {
    for text in [
        "sk-CANARY-secret-line\n",
        "sk CANARY=secret\n",
        "A=\"sk-CANARY-unterminated\n",
        "A='sk-CANARY' trailing-CANARY\n",
    ] {
        let message = parse_error(text).to_string();
        assert!(!message.contains("CANARY"), "{message}");
        assert!(!message.contains("sk"), "{message}");
    }
}

#[test]
fn file_errors_name_path_and_line() {
    let mut bytes = b"A=1\nB=2\nC=\xff\xfe\n".to_vec();
    let error =
        EnvFile::from_bytes(Path::new("app/.env"), Zeroizing::new(bytes.clone())).unwrap_err();
    assert!(
        matches!(error, ReadError::NotUtf8 { line: 3, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("app/.env"), "{error}");

    bytes = b"A=1\nbroken\n".to_vec();
    let error = EnvFile::from_bytes(Path::new("app/.env"), Zeroizing::new(bytes)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("app/.env, line 2"), "{message}");
}

#[test]
fn oversized_file_is_rejected_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let size = keyport_core::envimport::MAX_ENV_FILE_BYTES + 1;
    std::fs::write(&path, vec![b'#'; usize::try_from(size).unwrap()]).unwrap();
    let error = EnvFile::read(&path).unwrap_err();
    assert!(matches!(error, ReadError::TooLarge { .. }), "{error}");
}

#[test]
fn plan_imports_recognised_variables() {
    let plan = plan(&found(REAL_LOOKING), &[]).unwrap();
    let keys: Vec<(&str, Vec<Variable>, &str)> = plan
        .keys
        .iter()
        .map(|k| (k.provider, k.variables.clone(), k.key.expose_secret()))
        .collect();
    assert_eq!(
        keys,
        [
            (
                "anthropic",
                vec![line("ANTHROPIC_API_KEY", 4)],
                "sk-ant-CANARY-anthropic-000002"
            ),
            (
                "google",
                vec![line("VITE_GEMINI_API_KEY", 5)],
                "AIzaCANARY-gemini-000003"
            ),
            (
                "openai",
                vec![line("OPENAI_API_KEY", 2)],
                "sk-proj-CANARY-openai-000001"
            ),
        ]
    );
    assert!(plan.notices.is_empty(), "{:?}", plan.notices);
}

#[test]
fn plan_last_assignment_wins_with_notice() {
    let text = "OPENAI_API_KEY=sk-old-000000000001\nX=1\nOPENAI_API_KEY=sk-new-000000000002\n";
    let plan = plan(&found(text), &[]).unwrap();
    assert_eq!(plan.keys.len(), 1);
    assert_eq!(plan.keys[0].key.expose_secret(), "sk-new-000000000002");
    assert_eq!(plan.keys[0].variables, [line("OPENAI_API_KEY", 3)]);
    assert_eq!(
        plan.notices,
        [Notice::Overridden {
            name: "OPENAI_API_KEY".into(),
            earlier: vec![Origin::Line(1)],
            winner: Origin::Line(3),
        }]
    );
    let message = plan.notices[0].to_string();
    assert!(message.contains("line 1 and line 3"), "{message}");
    assert!(!message.contains("sk-"), "{message}");
}

#[test]
fn plan_skips_empty_values_with_notice() {
    let text = "OPENAI_API_KEY=\nGROQ_API_KEY=\"\"\nMISTRAL_API_KEY=mistral-key-0000001\n";
    let plan = plan(&found(text), &[]).unwrap();
    let providers: Vec<&str> = plan.keys.iter().map(|k| k.provider).collect();
    assert_eq!(providers, ["mistral"]);
    assert_eq!(
        plan.notices,
        [
            Notice::Empty(line("OPENAI_API_KEY", 1)),
            Notice::Empty(line("GROQ_API_KEY", 2)),
        ]
    );
}

#[test]
fn plan_reports_values_shadowed_by_empty() {
    let text = "OPENAI_API_KEY=sk-old-000000000001\nGROQ_API_KEY=gsk_key-0000000001\n\
                OPENAI_API_KEY=\nMISTRAL_API_KEY=mistral-old-00001\n\
                MISTRAL_API_KEY=kp_0123456789abcdef\n";
    let plan = plan(&found(text), &[]).unwrap();
    let providers: Vec<&str> = plan.keys.iter().map(|k| k.provider).collect();
    assert_eq!(providers, ["groq"]);
    let left = |name: &str, earlier: usize, winner: usize| Notice::EarlierValueLeft {
        name: name.into(),
        earlier: vec![Origin::Line(earlier)],
        winner: Origin::Line(winner),
    };
    assert!(
        plan.notices.contains(&left("OPENAI_API_KEY", 1, 3)),
        "{:?}",
        plan.notices
    );
    assert!(
        plan.notices.contains(&left("MISTRAL_API_KEY", 4, 5)),
        "{:?}",
        plan.notices
    );

    let error = plan.check_rewrite().unwrap_err().to_string();
    assert!(
        error.contains("OPENAI_API_KEY has a value at line 1"),
        "{error}"
    );
    assert!(error.contains("at line 3, is empty"), "{error}");
    assert!(!error.contains("sk-"), "{error}");

    // A skipped name is left alone on purpose, so it does not stop a rewrite.
    let skipped = plan_with_skip(text, &["OPENAI_API_KEY", "MISTRAL_API_KEY"]);
    assert!(skipped.check_rewrite().is_ok(), "{:?}", skipped.notices);

    // Without an earlier value there is nothing to leave behind.
    let only_empty = plan_with_skip("OPENAI_API_KEY=\nGROQ_API_KEY=gsk_1\n", &[]);
    assert!(only_empty.check_rewrite().is_ok());
}

fn plan_with_skip(text: &str, skip: &[&str]) -> ImportPlan {
    let skip: Vec<String> = skip.iter().map(|name| name.to_string()).collect();
    plan(&found(text), &skip).unwrap()
}

#[test]
fn plan_skips_client_tokens_from_an_earlier_rewrite() {
    let text = "OPENAI_API_KEY=kp_0123456789abcdef\nGROQ_API_KEY=gsk_real-key-000001\n";
    let plan = plan(&found(text), &[]).unwrap();
    let providers: Vec<&str> = plan.keys.iter().map(|k| k.provider).collect();
    assert_eq!(providers, ["groq"]);
    assert_eq!(
        plan.notices,
        [Notice::AlreadyToken(line("OPENAI_API_KEY", 1))]
    );
}

#[test]
fn plan_rejects_two_names_with_different_values() {
    let text = "GOOGLE_API_KEY=AIza-CANARY-one-0000\n# c\nGEMINI_API_KEY=AIza-CANARY-two-0000\n";
    let error = plan(&found(text), &[]).unwrap_err();
    assert_eq!(
        error,
        PlanError::Conflict {
            provider: "google",
            first: line("GOOGLE_API_KEY", 1),
            second: line("GEMINI_API_KEY", 3),
        }
    );
    let message = error.to_string();
    assert!(message.contains("GOOGLE_API_KEY (line 1)"), "{message}");
    assert!(message.contains("GEMINI_API_KEY (line 3)"), "{message}");
    assert!(!message.contains("CANARY"), "{message}");

    let skipped = plan(&found(text), &["GOOGLE_API_KEY".into()]).unwrap();
    assert_eq!(skipped.keys.len(), 1);
    assert_eq!(skipped.keys[0].key.expose_secret(), "AIza-CANARY-two-0000");
    assert_eq!(
        skipped.notices,
        [Notice::Skipped(line("GOOGLE_API_KEY", 1))]
    );
}

#[test]
fn plan_merges_names_with_equal_values() {
    let text =
        "OPENAI_API_KEY=sk-same-0000000001\nNEXT_PUBLIC_OPENAI_API_KEY='sk-same-0000000001'\n";
    let plan = plan(&found(text), &[]).unwrap();
    assert_eq!(plan.keys.len(), 1);
    assert_eq!(
        plan.keys[0].variables,
        [
            line("OPENAI_API_KEY", 1),
            line("NEXT_PUBLIC_OPENAI_API_KEY", 2)
        ]
    );
}

#[test]
fn plan_rejects_invalid_keys_by_variable() {
    let text = "A=ignored value with spaces\nOPENAI_API_KEY=\"sk-CANARY has space\"\n";
    let error = plan(&found(text), &[]).unwrap_err();
    assert_eq!(
        error,
        PlanError::InvalidKey {
            provider: "openai",
            variable: line("OPENAI_API_KEY", 2),
            problem: KeyProblem::WhitespaceOrControl,
        }
    );
    assert!(!error.to_string().contains("CANARY"), "{error}");

    for reference in ["${OTHER_KEY}", "$OTHER_KEY", "sk-${SUFFIX}"] {
        let text = format!("GROQ_API_KEY={reference}\n");
        let error = plan(&found(&text), &[]).unwrap_err();
        assert!(
            matches!(error, PlanError::Reference { .. }),
            "{reference}: {error}"
        );
    }
}

#[test]
fn plan_rejects_unknown_skip() {
    let error = plan(&found(REAL_LOOKING), &["OPENAI_API_KEYY".into()]).unwrap_err();
    assert!(matches!(error, PlanError::UnknownSkip { .. }), "{error}");
    assert!(error.to_string().contains("OPENAI_API_KEYY"), "{error}");
}

#[test]
fn rewritten_replaces_only_imported_values() {
    let text = "\
# keys
export OPENAI_API_KEY=sk-old-CANARY-000000001 # old
OPENAI_API_KEY=\"sk-new-CANARY-000000002\"\r
ANTHROPIC_API_KEY='sk-ant-CANARY-000000003'
GROQ_API_KEY=
DATABASE_URL=postgres://localhost/db # keep
";
    let file =
        EnvFile::from_bytes(Path::new(".env"), Zeroizing::new(text.as_bytes().to_vec())).unwrap();
    let plan = plan(&file.found(), &[]).unwrap();
    let rewritten = file.rewritten(&plan, "kp_TOKEN", &[]);
    assert_eq!(
        rewritten.as_str(),
        "\
# keys
export OPENAI_API_KEY=kp_TOKEN # old
OPENAI_API_KEY=\"kp_TOKEN\"\r
ANTHROPIC_API_KEY='kp_TOKEN'
GROQ_API_KEY=
DATABASE_URL=postgres://localhost/db # keep
"
    );
    assert!(!rewritten.contains("CANARY"));
}

fn env_file(text: &str) -> EnvFile {
    EnvFile::from_bytes(Path::new(".env"), Zeroizing::new(text.as_bytes().to_vec())).unwrap()
}

fn proxy_url(provider: &str) -> String {
    format!("http://127.0.0.1:7447/llm/{provider}")
}

/// Returns the upstream base URLs of `provider` in a default configuration.
fn default_upstream(provider: &str) -> Vec<String> {
    match provider {
        "openai" => vec!["https://api.openai.com/v1".to_owned()],
        "anthropic" => vec!["https://api.anthropic.com/".to_owned()],
        _ => Vec::new(),
    }
}

fn base_url_settings(file: &EnvFile) -> Result<Vec<BaseUrlSetting>, BaseUrlError> {
    let plan = plan(&file.found(), &[]).unwrap();
    file.base_url_settings(&plan, proxy_url, default_upstream)
}

#[test]
fn base_urls_are_added_after_the_last_line() {
    for (text, expected) in [
        (
            "OPENAI_API_KEY=sk-CANARY-1\nDEBUG=1\n",
            "OPENAI_API_KEY=kp_T\nDEBUG=1\n",
        ),
        // No line break at the end: one is added before the new lines.
        (
            "OPENAI_API_KEY=sk-CANARY-1\nDEBUG=1",
            "OPENAI_API_KEY=kp_T\nDEBUG=1\n",
        ),
    ] {
        let file = env_file(text);
        let settings = base_url_settings(&file).unwrap();
        assert_eq!(
            settings,
            [BaseUrlSetting {
                name: "OPENAI_BASE_URL".to_owned(),
                provider: "openai",
                url: proxy_url("openai"),
                lines: Vec::new(),
                unchanged: false,
            }]
        );
        let plan = plan(&file.found(), &[]).unwrap();
        assert_eq!(
            file.rewritten(&plan, "kp_T", &settings).as_str(),
            format!(
                "{expected}# Keyport proxy, added by `keyport key import --set-base-urls`\n\
                 OPENAI_BASE_URL=http://127.0.0.1:7447/llm/openai\n"
            )
        );
    }
}

#[test]
fn base_urls_follow_the_files_line_breaks_and_prefixes() {
    let file = env_file("VITE_OPENAI_API_KEY=sk-CANARY-1\r\nVITE_GEMINI_API_KEY=AIza-CANARY-2\r\n");
    let settings = base_url_settings(&file).unwrap();
    let plan = plan(&file.found(), &[]).unwrap();
    assert_eq!(
        file.rewritten(&plan, "kp_T", &settings).as_str(),
        "VITE_OPENAI_API_KEY=kp_T\r\nVITE_GEMINI_API_KEY=kp_T\r\n\
         # Keyport proxy, added by `keyport key import --set-base-urls`\r\n\
         VITE_GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:7447/llm/google\r\n\
         VITE_OPENAI_BASE_URL=http://127.0.0.1:7447/llm/openai\r\n"
    );
}

#[test]
fn base_urls_replace_empty_default_and_proxy_values() {
    let text = "\
OPENAI_BASE_URL= # set me
OPENAI_API_KEY=sk-CANARY-1
ANTHROPIC_BASE_URL=\"https://api.anthropic.com\"
ANTHROPIC_API_KEY=sk-ant-CANARY-2
export GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:7447/llm/google/
GOOGLE_API_KEY=AIza-CANARY-3
";
    let file = env_file(text);
    let settings = base_url_settings(&file).unwrap();
    let summary: Vec<(&str, &[usize], bool)> = settings
        .iter()
        .map(|s| (s.name.as_str(), s.lines.as_slice(), s.unchanged))
        .collect();
    assert_eq!(
        summary,
        [
            ("ANTHROPIC_BASE_URL", &[3][..], false),
            ("GOOGLE_GEMINI_BASE_URL", &[5][..], false),
            ("OPENAI_BASE_URL", &[1][..], false),
        ]
    );
    let plan = plan(&file.found(), &[]).unwrap();
    let rewritten = file.rewritten(&plan, "kp_T", &settings);
    assert_eq!(
        rewritten.as_str(),
        "\
OPENAI_BASE_URL= http://127.0.0.1:7447/llm/openai # set me
OPENAI_API_KEY=kp_T
ANTHROPIC_BASE_URL=\"http://127.0.0.1:7447/llm/anthropic\"
ANTHROPIC_API_KEY=kp_T
export GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:7447/llm/google
GOOGLE_API_KEY=kp_T
"
    );
    // The comment after the empty value stays a comment.
    let reparsed = env_file(&rewritten);
    let openai = &reparsed.assignments()[0];
    assert_eq!(openai.value.expose_secret(), proxy_url("openai"));

    // Run again on the rewritten file, every variable is already right.
    let again = reparsed
        .base_url_settings(&plan, proxy_url, default_upstream)
        .unwrap();
    assert!(again.iter().all(|setting| setting.unchanged), "{again:?}");
}

#[test]
fn base_urls_replace_equal_urls_in_other_spellings() {
    for value in [
        "https://API.OPENAI.COM/v1",
        "https://api.openai.com:443/v1/",
        "http://localhost:7000/llm/openai",
        "http://[::1]:7447/llm/openai/",
        "http://127.0.0.2:7447/llm/openai",
        "http://127.0.0.1:7447/llm/openai/v1",
    ] {
        let file = env_file(&format!(
            "OPENAI_API_KEY=sk-CANARY-1\nOPENAI_BASE_URL={value}\n"
        ));
        let settings = base_url_settings(&file)
            .unwrap_or_else(|error| panic!("{value} was rejected: {error}"));
        assert_eq!(settings[0].lines, [2], "{value}");
        assert!(!settings[0].unchanged, "{value}");
    }
    for value in [
        "https://api.openai.com/v1?x=1",
        "http://localhost:7447/llm/anthropic",
        "http://localhost:7447/llm/openaix",
        "https://localhost:7447/llm/openai",
        "http://192.0.2.1:7447/llm/openai",
    ] {
        let file = env_file(&format!(
            "OPENAI_API_KEY=sk-CANARY-1\nOPENAI_BASE_URL={value}\n"
        ));
        assert!(base_url_settings(&file).is_err(), "{value} was accepted");
    }
}

#[test]
fn base_url_pointing_elsewhere_is_an_error_without_its_value() {
    let text = "\
OPENAI_API_KEY=sk-CANARY-1
OPENAI_BASE_URL=https://user:gateway-secret@gateway.internal.test/v1
";
    let file = env_file(text);
    let error = base_url_settings(&file).unwrap_err();
    assert_eq!(
        error,
        BaseUrlError::PointsElsewhere {
            name: "OPENAI_BASE_URL".to_owned(),
            line: 2,
            provider: "openai",
        }
    );
    let message = error.to_string();
    assert!(message.contains("OPENAI_BASE_URL (line 2)"), "{message}");
    assert!(message.contains("[providers.openai]"), "{message}");
    assert!(!message.contains("gateway"), "{message}");
}

#[test]
fn base_urls_only_for_providers_whose_sdks_read_one() {
    let file = env_file("MISTRAL_API_KEY=m-CANARY-1\nGROQ_API_KEY=gsk-CANARY-2\n");
    assert_eq!(base_url_settings(&file).unwrap(), []);
    let plan = plan(&file.found(), &[]).unwrap();
    assert_eq!(
        file.rewritten(&plan, "kp_T", &[]).as_str(),
        "MISTRAL_API_KEY=kp_T\nGROQ_API_KEY=kp_T\n"
    );
}

/// Builds a random `.env` file from the syntax forms the parser accepts.
fn random_env_file(rng: &mut StdRng) -> String {
    const NAMES: [&str; 6] = [
        "OPENAI_API_KEY",
        "VITE_GROQ_API_KEY",
        "DATABASE_URL",
        "A",
        "_x.y-z",
        "GEMINI_API_KEY",
    ];
    const VALUES: [&str; 7] = [
        "sk-abc123",
        "",
        "with # hash",
        "multi\nline",
        "quote\"inside",
        "é ü ✓",
        "tab\there",
    ];
    let newline = if rng.gen_bool(0.5) { "\n" } else { "\r\n" };
    let mut text = String::new();
    if rng.gen_bool(0.2) {
        text.push('\u{feff}');
    }
    for _ in 0..rng.gen_range(0..12) {
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let value = VALUES[rng.gen_range(0..VALUES.len())];
        let export = if rng.gen_bool(0.3) { "export " } else { "" };
        let pad = [" ", "", "\t"][rng.gen_range(0..3)];
        let comment = if rng.gen_bool(0.3) { " # note" } else { "" };
        let line = match rng.gen_range(0..7) {
            0 => "# a comment line".to_owned(),
            1 => String::new(),
            2 => format!(
                "{export}{name}{pad}={pad}'{}'{comment}",
                value.replace('\'', "")
            ),
            3 => format!(
                "{export}{name}=\"{}\"{comment}",
                value.replace('\\', "\\\\").replace('"', "\\\"")
            ),
            4 => format!("{export}{name}=`{}`", value.replace('`', "")),
            _ => {
                let plain: String = value
                    .chars()
                    .filter(|c| !matches!(c, '\n' | '#' | '"' | '\'' | '`'))
                    .collect();
                format!("{export}{name}={pad}{}{pad}{comment}", plain.trim())
            }
        };
        text.push_str(&line.replace('\n', newline));
        text.push_str(newline);
    }
    if rng.gen_bool(0.3) {
        text.push_str("LAST=no-line-break");
    }
    text
}

fn raw_ranges(assignments: &[Assignment]) -> Vec<std::ops::Range<usize>> {
    assignments.iter().map(|a| a.raw_value.clone()).collect()
}

#[test]
fn identity_rewrite_reproduces_file_byte_for_byte() {
    let mut rng = StdRng::seed_from_u64(0x6b65_7970);
    for round in 0..2_000 {
        let text = random_env_file(&mut rng);
        let assignments = parse(&text).unwrap_or_else(|error| panic!("{error}: {text:?}"));
        let identity: Vec<_> = assignments
            .iter()
            .map(|a| (a.raw_value.clone(), &text[a.raw_value.clone()]))
            .collect();
        let rewritten = splice(&text, &identity, "");
        assert_eq!(rewritten.as_bytes(), text.as_bytes(), "round {round}");
    }
}

#[test]
fn token_rewrite_changes_only_the_values() {
    let mut rng = StdRng::seed_from_u64(0x656e_7669);
    for round in 0..2_000 {
        let text = random_env_file(&mut rng);
        let before = parse(&text).unwrap();
        // Like the import, replace only values that are not empty.
        let replaced: Vec<bool> = before
            .iter()
            .map(|a| !a.raw_value.is_empty() && rng.gen_bool(0.5))
            .collect();
        let replacements: Vec<_> = before
            .iter()
            .zip(&replaced)
            .filter(|(_, replace)| **replace)
            .map(|(a, _)| (a.raw_value.clone(), "kp_0123abcd"))
            .collect();
        let rewritten = splice(&text, &replacements, "");
        let after = parse(&rewritten).unwrap_or_else(|error| panic!("{error}: {rewritten:?}"));

        assert_eq!(after.len(), before.len(), "round {round}");
        for ((old, new), replace) in before.iter().zip(&after).zip(&replaced) {
            assert_eq!(old.name, new.name, "round {round}");
            assert_eq!(old.quote, new.quote, "round {round}");
            let expected = if *replace {
                "kp_0123abcd"
            } else {
                old.value.expose_secret()
            };
            assert_eq!(new.value.expose_secret(), expected, "round {round}");
        }

        // Outside the values, the two files are the same bytes.
        let strip = |source: &str, ranges: Vec<std::ops::Range<usize>>| {
            let empty: Vec<_> = ranges.into_iter().map(|range| (range, "")).collect();
            splice(source, &empty, "").to_string()
        };
        assert_eq!(
            strip(&text, raw_ranges(&before)),
            strip(&rewritten, raw_ranges(&after)),
            "round {round}"
        );
    }
}

#[test]
fn splice_skips_overlapping_ranges() {
    assert_eq!(
        splice("abcdef", &[(1..3, "X"), (2..4, "Y"), (4..5, "Z")], "").as_str(),
        "aXdZf"
    );
    assert_eq!(splice("abc", &[(2..9, "X")], "").as_str(), "abc");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn rewrite_file_keeps_mode_and_writes_private_backup() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "A=secret\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let backup = rewrite_file(&path, b"A=secret\n", b"A=kp_x\n", true).unwrap();
    assert_eq!(backup.as_deref(), Some(backup_path(&path).as_path()));
    assert_eq!(std::fs::read(&path).unwrap(), b"A=kp_x\n");
    assert_eq!(mode(&path), 0o644);
    let backup = backup.unwrap();
    assert_eq!(std::fs::read(&backup).unwrap(), b"A=secret\n");
    assert_eq!(mode(&backup), 0o600);
    assert!(backup.ends_with(".env.keyport-backup"));

    // A second backup would overwrite the first one's secrets.
    let error = rewrite_file(&path, b"A=kp_x\n", b"A=kp_y\n", true).unwrap_err();
    assert!(
        matches!(error, RewriteError::BackupExists { .. }),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"A=kp_x\n");

    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "temporary files were left behind");
}

#[cfg(unix)]
#[test]
fn rewrite_file_rejects_a_changed_file_and_follows_links() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.env");
    let link = dir.path().join(".env");
    std::fs::write(&real, "A=secret\n").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let error = rewrite_file(&link, b"A=other\n", b"A=kp_x\n", false).unwrap_err();
    assert!(matches!(error, RewriteError::Changed { .. }), "{error}");
    assert_eq!(std::fs::read(&real).unwrap(), b"A=secret\n");

    assert_eq!(
        rewrite_file(&link, b"A=secret\n", b"A=kp_x\n", false).unwrap(),
        None
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&real).unwrap(), b"A=kp_x\n");
}
