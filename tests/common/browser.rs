//! Pages in a real browser: Debian's headless Chromium. Shared by the integration tests
//! (through `tests/common`) and by the binary's own unit tests of the live page, which
//! include this file by path: it depends on nothing but the standard library.

use std::process::Command;

/// The Chromium the pages are tested with: `$CHROMIUM`, else `chromium` on the PATH
/// (Debian's, which `.ci/run` installs). A test that needs it fails, saying so, when it does
/// not run.
pub fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "Chromium is needed to test the pages (`{bin}` did not run): install it \
         (Debian: apt-get install chromium; .ci/run does) or set CHROMIUM to its path"
    );
    bin
}

/// The DOM of `url` after its scripts ran for `budget_ms` of virtual time, in a window
/// `height` pixels tall (the live page draws only the cards near the screen).
pub fn dom(url: &str, budget_ms: u32, height: u32) -> String {
    let bin = chromium();
    let out = Command::new(&bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            &format!("--window-size=1400,{height}"),
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("{bin} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("Chromium writes UTF-8")
}

/// The value of attribute `name` of the tag that starts at `at` in `dom`.
pub fn attribute<'a>(dom: &'a str, at: usize, name: &str) -> &'a str {
    let tag = &dom[at..at + dom[at..].find('>').expect("the tag ends")];
    let start = tag
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + name.len()
        + 3;
    &tag[start..start + tag[start..].find('"').expect("the value ends")]
}
