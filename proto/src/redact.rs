//! Keeping credentials out of everything vaedp prints or writes: the
//! userinfo of a URL (`https://user:password@host/…`, an endpoint with a
//! user), the values of signing query parameters (an Azure SAS `?sig=…`, a
//! presigned S3 or GCS URL's signature and credential), and the values of
//! the environment's credential variables (`AWS_SECRET_ACCESS_KEY`,
//! `AZURE_STORAGE_SAS_TOKEN`, …) wherever they appear. Every console line,
//! error, `config.toml` (run directory and checkpoint), sweep point name,
//! `sweep.csv` and HPARAMS record goes through [`redact`].

/// What stands where a credential was.
pub const REDACTED: &str = "[redacted]";

/// Environment variables whose values are credentials.
pub const SECRET_VARS: [&str; 14] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
    "HF_TOKEN",
];

/// Query parameters (compared without case) whose values sign or
/// authorise a request.
const SECRET_PARAMS: [&str; 22] = [
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "token",
    "access_token",
    "id_token",
    "sas",
    "sastoken",
    "sas_token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "key",
    "apikey",
    "api_key",
    "accountkey",
];

/// `text` with every credential replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut out = redact_userinfo(text);
    out = redact_params(&out);
    for v in secret_values() {
        out = out.replace(&v, REDACTED);
    }
    out
}

/// The values of [`SECRET_VARS`] set in the environment (those long enough
/// not to match by chance). A SAS token's leading `?` is dropped.
fn secret_values() -> Vec<String> {
    SECRET_VARS
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().trim_start_matches('?').to_string())
        .filter(|v| v.len() >= 4)
        .collect()
}

/// Characters that end a URL inside text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ')' | ']' | '}' | ',')
}

/// Replaces the `user:password@` of every `scheme://user:password@host`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment or the URL's end;
        // a password may hold `,` `'` `)` `;` …, so the userinfo runs to the
        // last `@` before the first character it cannot hold unencoded.
        let end = |s: &str| {
            s.find(|c: char| matches!(c, '/' | '?' | '#') || ends_url(c))
                .unwrap_or(s.len())
        };
        let reach = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let taken = match tail[..reach].rfind('@') {
            Some(at) if tail[..at] != *REDACTED => {
                out.push_str(REDACTED);
                let host = end(&tail[at + 1..]);
                out.push_str(&tail[at..at + 1 + host]);
                at + 1 + host
            }
            _ => {
                let e = end(tail);
                out.push_str(&tail[..e]);
                e
            }
        };
        rest = &tail[taken..];
    }
    out.push_str(rest);
    out
}

/// Replaces the values of [`SECRET_PARAMS`] after a `?` or `&`.
fn redact_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut last = 0;
    while let Some((i, c)) = chars.next() {
        if c != '?' && c != '&' {
            continue;
        }
        let after = &text[i + 1..];
        let Some(eq) = after.find('=') else { continue };
        let name = &after[..eq];
        if name.is_empty() || name.contains(|c: char| ends_url(c) || c == '&' || c == '?') {
            continue;
        }
        if !SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let value_start = i + 1 + eq + 1;
        let value_len = text[value_start..]
            .find(|c: char| c == '&' || c == '#' || ends_url(c))
            .unwrap_or(text.len() - value_start);
        out.push_str(&text[last..value_start]);
        if value_len > 0 {
            out.push_str(REDACTED);
        }
        last = value_start + value_len;
        while chars.peek().is_some_and(|(j, _)| *j < last) {
            chars.next();
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_goes_and_the_rest_stays() {
        assert_eq!(
            redact("fetching https://alice:s3cret@example.com/data/manifest.json failed"),
            "fetching https://[redacted]@example.com/data/manifest.json failed"
        );
        assert_eq!(
            redact("endpoint = \"http://minio:pw@10.0.0.1:9000\"\n"),
            "endpoint = \"http://[redacted]@10.0.0.1:9000\"\n"
        );
        assert_eq!(redact("s3://bucket/a@b/c"), "s3://bucket/a@b/c");
        assert_eq!(redact("plain text, no url"), "plain text, no url");
        // Redacting twice changes nothing more.
        let once = redact("https://u:p@h/x");
        assert_eq!(redact(&once), once);
    }

    #[test]
    fn a_password_with_the_characters_that_end_a_url_in_text_goes_whole() {
        for pw in ["pa,ss", "pa'ss", "pa)ss", "p@ss", "pa]s}s;x", "pa,ss@"] {
            let line = format!("cannot read http://alice:{pw}@host/x.npz: 404");
            assert_eq!(
                redact(&line),
                "cannot read http://[redacted]@host/x.npz: 404",
                "{pw}"
            );
        }
        assert_eq!(
            redact("(see http://host:9000), and 'http://u:p,w@h'"),
            "(see http://host:9000), and 'http://[redacted]@h'"
        );
    }

    #[test]
    fn signing_parameters_lose_their_values() {
        let sas =
            "https://acct.blob.core.windows.net/c/d?sv=2022-11-02&ss=b&sig=AbC%2Bdef%3D&se=2030";
        let r = redact(sas);
        assert!(!r.contains("AbC"), "{r}");
        assert!(
            r.contains("sv=2022-11-02") && r.contains("sig=[redacted]&se=2030"),
            "{r}"
        );
        let presigned = "get s3://b/k?X-Amz-Credential=AKIA/x&X-Amz-Signature=deadbeef done";
        let r = redact(presigned);
        assert!(!r.contains("AKIA") && !r.contains("deadbeef"), "{r}");
        assert!(r.ends_with(" done"), "{r}");
        assert_eq!(redact("a?b=c&key"), "a?b=c&key");
    }

    use proptest::prelude::*;

    /// Characters a password may hold unencoded (RFC 3986's unreserved and
    /// sub-delims, and `:`).
    const USERINFO: &[char] = &[
        'a', 'Z', '7', '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=',
        ':', '%',
    ];

    proptest! {
        #[test]
        fn prop_no_password_survives(pw in prop::collection::vec(prop::sample::select(USERINFO), 6..24)) {
            let pw: String = pw.into_iter().collect();
            prop_assume!(!pw.contains("redacted"));
            let line = format!("cannot read 'http://alice:{pw}@host.example/x.npz' (404)");
            let out = redact(&line);
            prop_assert!(!out.contains(&format!(":{pw}@")), "{}", out);
            prop_assert!(out.contains("[redacted]@host.example/x.npz"), "{}", out);
        }

        #[test]
        fn prop_any_text_redacts_without_panicking(
            s in crate::fuzz::mutated_text("see https://u:p@h/x?sig=abc&a=1, s3://b/k \"az://c/d\"")
        ) {
            let _ = redact(&s);
        }
    }
}
