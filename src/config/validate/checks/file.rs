//! `type = "file"`: a path exists (and is fresh), or does not.

use super::super::super::defaults::limits;
use super::super::super::model::FileCheckSpec;
use super::super::super::raw::RawFileCheck;
use super::super::ctx::Ctx;

pub(super) fn check(f: &RawFileCheck, mut cx: Ctx<'_>) -> Option<FileCheckSpec> {
    let path = cx.absolute(&f.path, "path");
    let exists = f.exists.unwrap_or(true);
    let max_age = match f.max_age.as_deref() {
        None => Some(None),
        Some(_) if !exists => cx.fail(
            "`max_age` needs `exists = true`: the age of a path that must not exist means nothing",
        ),
        text => cx
            .duration(text, std::time::Duration::ZERO, limits::MAX_AGE, "max_age")
            .map(Some),
    };
    cx.finish(|| {
        Some(FileCheckSpec {
            path: path?,
            exists,
            max_age: max_age?,
        })
    })
}
