//! Every reader on fixtures in the dataset's own format, broken rows included: good rows become
//! samples, bad ones errors naming file, line/sample and reason, and reading goes on.
use m2ib_data::readers::{cc, mscxr, roco, rsicd};
use m2ib_data::{ImageSource, Sample, SampleError};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    m2ib_testkit::crate_dir().join("tests/fixtures")
}

fn split(v: Vec<Result<Sample, SampleError>>) -> (Vec<Sample>, Vec<SampleError>) {
    let (ok, err): (Vec<_>, Vec<_>) = v.into_iter().partition(Result::is_ok);
    (
        ok.into_iter().map(Result::unwrap).collect(),
        err.into_iter().map(Result::unwrap_err).collect(),
    )
}

#[test]
fn conceptual_captions_tsv() {
    let d = fixtures().join("cc");
    let reader = cc::CcReader {
        tsv: d.join("captions.tsv"),
        image_root: d.join("images"),
        mapping: Some(cc::read_mapping(&d.join("mapping.csv")).unwrap()),
    };
    let (ok, err) = split(reader.read());
    let caps: Vec<&str> = ok.iter().map(|s| s.caption.as_str()).collect();
    assert_eq!(
        caps,
        [
            "a dog running on the beach",
            "a cat asleep on a sofa",
            "a bird on a branch"
        ]
    );
    // The URL without a mapping resolves to <root>/<sha1(url)>.<ext>.
    assert!(
        matches!(&ok[2].image, ImageSource::Path(p) if p.file_name().unwrap().to_str().unwrap().starts_with("7f818cd5"))
    );
    assert_eq!(ok[1].id, "cc-2");
    let reasons: Vec<(Option<usize>, &str)> =
        err.iter().map(|e| (e.line, e.reason.as_str())).collect();
    assert_eq!(err.len(), 5, "{reasons:?}");
    assert!(err.iter().all(|e| e.file.ends_with("captions.tsv")));
    assert!(reasons[0].1.contains("`caption` is empty") && reasons[0].0 == Some(4));
    assert!(reasons[1].1.contains("not UTF-8") && reasons[1].0 == Some(5));
    assert!(reasons[2].1.contains("expected 2 tab-separated fields"));
    assert!(reasons[3].1.contains("no-such-image.png") && reasons[3].1.contains("does not exist"));
    assert!(reasons[4].1.contains("not downloaded") && reasons[4].1.contains("fetch-cc"));
}

#[test]
fn url_layout() {
    assert_eq!(
        cc::url_stem("http://example.invalid/photos/bird.JPG?size=large"),
        "7f818cd510b2d9f0181bb42f5152098478a0e669"
    );
    assert_eq!(cc::url_extension("http://x/a.PNG?q=1"), "png");
    assert_eq!(cc::url_extension("http://x/a"), "jpg");
}

#[test]
fn ms_cxr_groups_boxes_of_one_phrase() {
    let d = fixtures().join("mscxr");
    let (ok, err) = split(mscxr::read(
        &d.join("MS_CXR_Local_Alignment_v1.1.0.csv"),
        &d,
    ));
    assert_eq!(ok.len(), 3);
    assert_eq!(ok[0].caption, "Patchy opacity, right lower lobe");
    assert_eq!(
        ok[0].boxes,
        vec![[100.0, 200.0, 150.0, 260.0], [400.0, 220.0, 430.0, 260.0]]
    );
    assert_eq!(ok[1].boxes, vec![[900.0, 1200.0, 1700.0, 1900.0]]);
    assert_eq!(ok[2].extra["split"], "val");
    let reasons: Vec<&str> = err.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(err.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("img-c.jpg") && err[0].line == Some(6));
    assert!(reasons[1].contains("field `x` is not a number") && err[1].line == Some(7));
    assert!(reasons[2].contains("non-positive size"));
}

#[test]
fn ms_cxr_missing_columns_are_named() {
    let d = fixtures().join("mscxr");
    let (ok, err) = split(mscxr::read(&d.join("missing_columns.csv"), &d));
    assert!(ok.is_empty());
    assert!(
        err[0]
            .reason
            .contains("missing column(s): w, h, image_width"),
        "{}",
        err[0].reason
    );
}

#[test]
fn roco_captions_and_dlinks() {
    let (ok, err) = split(roco::read(&fixtures().join("roco")));
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0].caption, "CT scan of the chest showing a nodule");
    assert!(matches!(&ok[0].image, ImageSource::Path(p) if p.ends_with("PMC1234_fig1.jpg")));
    assert_eq!(err.len(), 3);
    assert!(
        err[0].reason.contains("`caption` is empty")
            && err[0].sample.as_deref() == Some("ROCO_00003")
    );
    assert!(err[1].reason.contains("does not exist"));
    assert!(err[2].reason.contains("expected `ROCO_id<TAB>caption`") && err[2].line == Some(5));
}

#[test]
fn rsicd_json() {
    let d = fixtures().join("rsicd");
    let (ok, err) = split(rsicd::read(
        &d.join("dataset_rsicd.json"),
        &d.join("RSICD_images"),
        Some("test"),
    ));
    // Duplicated sentence kept once; other splits skipped.
    assert_eq!(
        ok.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["airport_1.jpg#0", "airport_1.jpg#2"]
    );
    assert_eq!(err.len(), 2);
    assert!(err[0].reason.contains("missing_3.jpg"));
    assert!(err[1].reason.contains("missing field `filename`"));
    let (all, _) = split(rsicd::read(
        &d.join("dataset_rsicd.json"),
        &d.join("RSICD_images"),
        None,
    ));
    assert_eq!(all.len(), 3);
}
