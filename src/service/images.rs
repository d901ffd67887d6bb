//! Images sent as uploads: their size read from the header first (a
//! decompression bomb is refused before any pixel is decoded), then
//! decoded within limits, turned upright (EXIF orientation), re-encoded
//! without any metadata (EXIF, GPS, text chunks), and a thumbnail made.
//! Synchronous and CPU-bound: run it in `spawn_blocking`.

use std::fs::File;
use std::io::{BufWriter, Cursor};
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// JPEG quality of re-encoded photos and thumbnails.
const JPEG_QUALITY: u8 = 88;

/// What an image may be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ImageLimits {
    /// Most pixels (width × height).
    pub(crate) max_pixels: u64,
    /// Longest side of the thumbnail.
    pub(crate) thumbnail_px: u32,
}

/// An image, checked and rewritten.
#[derive(Debug)]
pub(crate) struct Processed {
    /// Upright: after the orientation is applied.
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// False when the original bytes are kept (a GIF: it has no EXIF, and
    /// decoding only its first frame would stop its animation).
    pub(crate) rewritten: bool,
}

#[derive(Debug)]
pub(crate) enum ImageRefusal {
    /// Bad input: the message says why (for `invalid`).
    Invalid(String),
    /// Reading or writing the files failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for ImageRefusal {
    fn from(e: std::io::Error) -> Self {
        ImageRefusal::Io(e)
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> ImageRefusal {
    ImageRefusal::Invalid(format!("not a valid {what} image: {e}"))
}

/// The image format of a sniffed content type, for the types handled here.
pub(crate) fn format_of(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Checks the image in `src` (at most `uploads.max_bytes`, so it may be
/// read into memory), writes its clean version to `out` (unless
/// `rewritten` is false) and its thumbnail to `thumb`.
pub(crate) fn process(
    src: &Path,
    format: ImageFormat,
    limits: ImageLimits,
    out: &Path,
    thumb: &Path,
) -> Result<Processed, ImageRefusal> {
    let img = decode_checked(src, format, limits.max_pixels)?;
    // 3. Re-encode (nothing of the original's metadata is carried over).
    let rewritten = format != ImageFormat::Gif;
    if rewritten {
        encode(&img, format, out)?;
    }
    // 4. The thumbnail: JPEG for photos, PNG for the rest (transparency);
    //    `Service::file` names its type the same way.
    let px = limits.thumbnail_px;
    // Never enlarged: a picture that fits already is its own thumbnail.
    let small = if img.width() > px || img.height() > px { img.thumbnail(px, px) } else { img.clone() };
    let thumbnail_format = if format == ImageFormat::Jpeg { ImageFormat::Jpeg } else { ImageFormat::Png };
    encode(&small, thumbnail_format, thumb)?;
    Ok(Processed { width: img.width(), height: img.height(), rewritten })
}

/// An avatar from the image in `src`: checked and decoded as [`process`]
/// does, turned upright, cropped to its centre square, scaled down to at
/// most `px` a side (never up), written to `out` without metadata: PNG if
/// it has transparency, else JPEG. Returns that format.
pub(crate) fn avatar(
    src: &Path,
    format: ImageFormat,
    max_pixels: u64,
    px: u32,
    out: &Path,
) -> Result<ImageFormat, ImageRefusal> {
    let img = decode_checked(src, format, max_pixels)?;
    let side = img.width().min(img.height());
    let square = img.crop_imm((img.width() - side) / 2, (img.height() - side) / 2, side, side);
    let small = if side > px { square.resize_exact(px, px, FilterType::Lanczos3) } else { square };
    let written = if small.color().has_alpha() { ImageFormat::Png } else { ImageFormat::Jpeg };
    encode(&small, written, out)?;
    Ok(written)
}

/// Steps 1 and 2 of [`process`]: the size from the header (a bomb stops
/// there), then the pixels, decoded within that size and turned upright.
fn decode_checked(src: &Path, format: ImageFormat, max_pixels: u64) -> Result<DynamicImage, ImageRefusal> {
    let what = format.extensions_str().first().copied().unwrap_or("image").to_ascii_uppercase();
    let bytes = std::fs::read(src)?;
    let reader = |limits: Limits| {
        let mut r = ImageReader::new(Cursor::new(&bytes[..]));
        r.set_format(format);
        r.limits(limits);
        r
    };
    // 1. The header alone: a bomb stops here.
    let (w, h) = reader(Limits::default()).into_dimensions().map_err(|e| invalid(&what, e))?;
    let pixels = u64::from(w) * u64::from(h);
    if w == 0 || h == 0 {
        return Err(ImageRefusal::Invalid(format!("the {what} image has no pixels")));
    }
    if pixels > max_pixels {
        return Err(ImageRefusal::Invalid(format!(
            "the image is {w} x {h} pixels; at most {max_pixels} pixels are accepted"
        )));
    }
    if format == ImageFormat::Jpeg && !jpeg_complete(&bytes) {
        return Err(ImageRefusal::Invalid("not a valid JPEG image: it is truncated (no end marker)".into()));
    }
    // 2. Decode within the size just read (8 bytes a pixel covers 16-bit RGBA).
    let mut strict = Limits::default();
    strict.max_image_width = Some(w);
    strict.max_image_height = Some(h);
    strict.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    let mut decoder = reader(strict).into_decoder().map_err(|e| invalid(&what, e))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| invalid(&what, e))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Writes `img` as `format` to `path`, synced to disk.
fn encode(img: &DynamicImage, format: ImageFormat, path: &Path) -> Result<(), ImageRefusal> {
    let file = File::create(path)?;
    let mut w = BufWriter::new(file);
    let result = match format {
        ImageFormat::Jpeg => {
            // JPEG has no alpha channel.
            let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
            rgb.write_with_encoder(JpegEncoder::new_with_quality(&mut w, JPEG_QUALITY))
        }
        ImageFormat::WebP => {
            let rgba = DynamicImage::ImageRgba8(img.to_rgba8());
            rgba.write_with_encoder(WebPEncoder::new_lossless(&mut w))
        }
        _ => {
            // PNG: 8 bits a channel keeps any colour type the encoder takes.
            let img = if img.color().has_alpha() {
                DynamicImage::ImageRgba8(img.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8())
            };
            img.write_with_encoder(PngEncoder::new(&mut w))
        }
    };
    result.map_err(|e| ImageRefusal::Io(std::io::Error::other(e)))?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

/// Whether a JPEG ends its last scan: an end-of-image marker (FF D9)
/// follows the last start-of-scan (FF DA). Inside scan data a 0xFF byte is
/// always followed by 0x00 or a restart marker, so neither can appear there
/// by chance; a file cut short lacks the end marker.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(at) => bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_jpeg_is_incomplete() {
        let whole = [0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3, 0xFF, 0x00, 0xFF, 0xD9];
        assert!(jpeg_complete(&whole));
        assert!(!jpeg_complete(&whole[..8]));
        assert!(!jpeg_complete(&[0xFF, 0xD8]));
    }
}
