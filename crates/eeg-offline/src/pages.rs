//! What the project's two pages share, and how it goes into them: the palette and style
//! (`assets/page.css`) and the script helpers (`assets/page.js`), put in place of a marker
//! in a page's template. The report (this crate) and the service's live page (`/ui`, in the
//! binary, which depends on this crate) are both made with [`splice`], so each page is one
//! self-contained document that loads nothing.
//!
//! Every page asset lives in the repository's `assets/` folder.

/// The pages' shared style sheet: the palette as CSS variables, type, legends, the error
/// banner.
pub const PAGE_CSS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/page.css"
));

/// The pages' shared script: the object `Page` (its header states the one style of every
/// page script).
pub const PAGE_JS: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/page.js"));

/// Where a template wants [`PAGE_CSS`]: inside its `<style>`, once.
pub const CSS_MARKER: &str = "/*PAGE_CSS*/";

/// Where a template wants [`PAGE_JS`]: inside a `<script>` before the page's own, once.
pub const JS_MARKER: &str = "/*PAGE_JS*/";

/// `template` with [`PAGE_CSS`] and [`PAGE_JS`] in place of the first [`CSS_MARKER`] and
/// [`JS_MARKER`]. Only the template is searched for the markers, never what is put in.
pub fn splice(template: &str) -> String {
    fill(template, &[(CSS_MARKER, PAGE_CSS), (JS_MARKER, PAGE_JS)])
}

/// `template` with the first occurrence of each marker replaced by its text, in one pass
/// from the start: text put in is never searched (a channel named like a marker stays a
/// name), and a marker the template does not have is left out.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    let mut wanted = values.to_vec();
    while let Some((k, at)) = wanted
        .iter()
        .enumerate()
        .filter_map(|(k, (marker, _))| rest.find(marker).map(|at| (k, at)))
        .min_by_key(|&(_, at)| at)
    {
        let (marker, text) = wanted.swap_remove(k);
        out.push_str(&rest[..at]);
        out.push_str(text);
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_marker_is_replaced_once_and_nothing_put_in_is_searched() {
        let page = splice("<style>/*PAGE_CSS*/ a</style><script>/*PAGE_JS*/</script>/*PAGE_CSS*/");
        assert_eq!(
            page,
            format!("<style>{PAGE_CSS} a</style><script>{PAGE_JS}</script>/*PAGE_CSS*/")
        );
        // In either order; a template without a marker is left as it is.
        assert_eq!(
            splice("/*PAGE_JS*/|/*PAGE_CSS*/"),
            format!("{PAGE_JS}|{PAGE_CSS}")
        );
        assert_eq!(splice("<p>plain</p>"), "<p>plain</p>");
    }

    #[test]
    fn the_shared_assets_are_the_palette_and_page() {
        assert!(PAGE_CSS.contains("--band-0:") && PAGE_CSS.contains("--state-good:"));
        assert!(PAGE_JS.contains("const Page = ") && PAGE_JS.starts_with("/*"));
    }

    #[test]
    fn placeholders_are_filled_once_and_text_put_in_is_left_alone() {
        let out = fill(
            "<t>{{TITLE}}</t>{{BODY}}{{ {{DATA}}",
            &[
                ("{{TITLE}}", "a {{DATA}}"),
                ("{{BODY}}", "b"),
                ("{{DATA}}", "{}"),
            ],
        );
        assert_eq!(out, "<t>a {{DATA}}</t>b{{ {}");
    }
}
