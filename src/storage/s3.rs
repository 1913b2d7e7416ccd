//! S3 backend (`s3://bucket/prefix`) on aws-sdk-s3: AWS S3 and any S3-compatible store
//! (Cloudflare R2, Backblaze B2, MinIO, Garage, Supabase Storage).
//!
//! Invariants:
//! - **Uploads cannot lie.** Every PUT carries `Content-MD5`, so the store rejects a body that
//!   arrived damaged or cut short; a returned MD5 ETag must match what was sent; and after every
//!   upload a HEAD must show the object with exactly the size sent (catches 0-byte and short
//!   objects reported stored). Objects at or above `multipart_threshold` go up in parts (each
//!   with its own `Content-MD5`, parallel up to `upload_concurrency`), with the part size raised
//!   so no object needs more than 10,000 parts; a failed multipart upload is aborted.
//! - **Retries are ours** (the SDK's own are disabled): every request runs under
//!   [`super::retry`] — throttling (503 SlowDown, 429), 5xx, timeouts, connection resets and
//!   truncated bodies are retried with full-jitter backoff within a per-operation budget; a 403,
//!   a missing bucket or a malformed request fails at once with a message naming what to check.
//!   An endpoint that has never answered fails after 3 attempts (a wrong `endpoint` should not
//!   take minutes to report).
//! - **No secret in any message**: errors show the endpoint, bucket and object key, never the
//!   secret key or session token (the SDK's `Credentials` redacts them in `Debug`).
//! - **No conditional writes.** Correctness rests on immutable, uniquely named objects
//!   (docs/storage.md, "What keepsake guarantees on S3"); Garage, for one, ignores
//!   `If-None-Match`.
//! - **No instance-metadata lookups when credentials are configured**: configured keys are used
//!   as they are; only without them is the standard AWS chain (environment, profile, web
//!   identity, container, instance metadata) consulted.
//!
//! Reads buffer whole objects (packs are bounded by `pack_size_mib`), so memory stays bounded
//! by the number of objects in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, SharedCredentialsProvider,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::retry::{self, Failure, RetryPolicy, RetryStats};
use super::{ObjectInfo, ObjectStore};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// S3 limits the number of parts of one object.
const MAX_PARTS: u64 = 10_000;
/// S3's smallest part (all but the last).
const MIN_PART: u64 = 5 << 20;

/// Everything the backend needs, from `[repository]`.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// `https://…` of an S3-compatible service; `None` for AWS S3.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub path_style: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub storage_class: Option<String>,
    /// `x-amz-server-side-encryption` (`AES256`, `aws:kms`).
    pub server_side_encryption: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// Objects at least this large are uploaded in parts.
    pub multipart_threshold: u64,
    /// Part size (raised when an object would need more than 10,000 parts).
    pub part_size: u64,
    /// Uploads (packs, and parts of one pack) in flight at once.
    pub upload_concurrency: usize,
    /// Time limit of one request attempt.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// How single-request uploads prove their body arrived intact.
    pub upload_checksum: UploadChecksum,
}

/// The checksum a single-request upload carries, which the store verifies before storing.
///
/// `Content-MD5` works with every S3-compatible store but MD5 runs at ~0.6 GB/s: on the 2-core
/// benchmark machine it was ~4% of an S3 backup's CPU. `x-amz-checksum-crc32c` (AWS S3, R2,
/// MinIO, Garage ≥ 1.1) is computed with CRC instructions at many GB/s and the store echoes
/// the value it verified. Parts of multipart uploads always carry Content-MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadChecksum {
    /// CRC32C while the store confirms it (echoes the checksum it verified); Content-MD5 for
    /// the rest of the session once it does not (no echo, or a 400/501 for the header).
    Auto,
    /// CRC32C; an upload the store does not confirm is an error.
    Crc32c,
    /// Content-MD5 always (and the ETag compared with it).
    Md5,
}

impl S3Settings {
    /// Settings with defaults for everything but the location.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Settings {
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            storage_class: None,
            server_side_encryption: None,
            sse_kms_key_id: None,
            multipart_threshold: 64 << 20,
            part_size: 8 << 20,
            upload_concurrency: 2,
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            upload_checksum: UploadChecksum::Auto,
        }
    }

    /// Where this repository is, for messages: `s3://bucket/prefix at ENDPOINT`.
    pub fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.bucket,
            self.prefix,
            self.endpoint.as_deref().unwrap_or("AWS S3")
        )
    }
}

/// Part size for an object of `len` bytes: the configured size, raised to keep within 10,000
/// parts, never below S3's 5 MiB minimum, rounded up to whole MiB.
pub fn part_size_for(len: u64, configured: u64) -> u64 {
    let needed = len.div_ceil(MAX_PARTS);
    let size = configured.max(needed).max(MIN_PART);
    size.div_ceil(1 << 20) << 20
}

/// Whether the store reports KMS encryption (whose ETags are not the MD5 of the body).
fn is_kms(e: Option<&aws_sdk_s3::types::ServerSideEncryption>) -> bool {
    e.is_some_and(|e| e.as_str().starts_with("aws:kms"))
}

/// An S3 bucket (and prefix) as an [`ObjectStore`].
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    s: S3Settings,
    stats: RetryStats,
    /// Whether the endpoint has ever answered (any HTTP response).
    reached: AtomicBool,
    /// `upload_checksum = "auto"` found the store not confirming CRC32C: use Content-MD5.
    crc_refused: AtomicBool,
}

impl S3Store {
    /// Build the client. Makes no request (the first request tells whether the store is there).
    pub async fn new(s: S3Settings) -> Result<Self> {
        use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let region = Region::new(s.region.clone());
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(s.request_timeout)
            .build();
        let credentials = match (&s.access_key_id, &s.secret_access_key) {
            (Some(id), Some(secret)) => SharedCredentialsProvider::new(Credentials::new(
                id.expose(),
                secret.expose(),
                s.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "keepsake-config",
            )),
            _ => {
                // The standard chain; only consulted when no keys are configured.
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http.clone())
                    .region(region.clone())
                    .load()
                    .await;
                shared.credentials_provider().ok_or_else(|| {
                    Error::Usage(format!(
                        "{}: no S3 credentials: set repository.access_key_id and repository.secret_access_key (env:NAME or file:/path), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an AWS profile",
                        s.describe()
                    ))
                })?
            }
        };
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .http_client(http)
            .credentials_provider(credentials)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(timeouts)
            .force_path_style(s.path_style)
            // We send Content-MD5 ourselves; the SDK's default CRC trailers (aws-chunked
            // uploads) are not understood by every S3-compatible store.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(e) = &s.endpoint {
            b = b.endpoint_url(e.trim_end_matches('/'));
        }
        Ok(S3Store {
            client: Client::from_conf(b.build()),
            s,
            stats: RetryStats::default(),
            reached: AtomicBool::new(false),
            crc_refused: AtomicBool::new(false),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.s.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.s.prefix)
        }
    }

    fn strip<'a>(&self, full: &'a str) -> &'a str {
        if self.s.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.s.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    /// Sort one failed request into retry or fatal.
    fn classify<E>(
        &self,
        what: &str,
        attempt: u32,
        err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let detail = DisplayErrorContext(err).to_string();
        match err {
            SdkError::ConstructionFailure(_) => {
                Failure::Fatal(Error::Storage(format!("{what}: {detail}")))
            }
            SdkError::TimeoutError(_) => Failure::Retry(format!("timed out: {detail}")),
            SdkError::DispatchFailure(d) => {
                if d.is_user() {
                    return Failure::Fatal(Error::Storage(format!("{what}: {detail}")));
                }
                if !self.reached.load(Ordering::Relaxed) && attempt >= 3 {
                    return Failure::Fatal(Error::Storage(format!(
                        "cannot reach {} ({detail}); check repository.endpoint and that the server is running",
                        self.s.describe()
                    )));
                }
                Failure::Retry(format!("connection failed: {detail}"))
            }
            SdkError::ResponseError(_) => {
                self.reached.store(true, Ordering::Relaxed);
                Failure::Retry(format!("unreadable response: {detail}"))
            }
            SdkError::ServiceError(se) => {
                self.reached.store(true, Ordering::Relaxed);
                let status = se.raw().status().as_u16();
                let code = err.code().unwrap_or("").to_string();
                let msg = err.message().unwrap_or("").to_string();
                let said = if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status} {code}: {msg}")
                };
                let retryable = status >= 500
                    || status == 429
                    || status == 408
                    || matches!(
                        code.as_str(),
                        "SlowDown"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "RequestTimeTooSkewed"
                            | "BadDigest"
                            // Garage's answer to a body that does not match its checksum.
                            | "InvalidDigest"
                            | "XAmzContentChecksumMismatch"
                            | "IncompleteBody"
                    );
                if retryable {
                    return Failure::Retry(said);
                }
                let hint = match (status, code.as_str()) {
                    (_, "NoSuchBucket") => format!(
                        "bucket \"{}\" does not exist at {}: create it, or fix repository.url",
                        self.s.bucket,
                        self.s.endpoint.as_deref().unwrap_or("AWS S3")
                    ),
                    (403, _) | (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => format!(
                        "access denied ({said}): check repository.access_key_id and secret_access_key (or the AWS credential chain) and that the key may read and write s3://{}/{}",
                        self.s.bucket, self.s.prefix
                    ),
                    (_, "AuthorizationHeaderMalformed" | "PermanentRedirect") | (301, _) => format!(
                        "{said}: the bucket is in another region than repository.region = \"{}\"",
                        self.s.region
                    ),
                    _ => said,
                };
                Failure::Fatal(Error::Storage(format!("{what}: {hint}")))
            }
            _ => Failure::Retry(detail),
        }
    }

    fn is_not_found<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool
    where
        E: ProvideErrorMetadata,
    {
        match err {
            SdkError::ServiceError(se) => {
                se.raw().status().as_u16() == 404 && err.code() != Some("NoSuchBucket")
            }
            _ => false,
        }
    }

    /// A single-request upload of `data` to `full` with the configured storage class and
    /// encryption; the caller adds the checksum.
    fn put_request(
        &self,
        full: &str,
        data: &Bytes,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.s.bucket)
            .key(full)
            .content_length(data.len() as i64)
            .set_storage_class(self.s.storage_class.as_deref().map(Into::into))
            .set_server_side_encryption(self.s.server_side_encryption.as_deref().map(Into::into))
            .set_ssekms_key_id(self.s.sse_kms_key_id.clone())
            .body(ByteStream::from(data.clone()))
    }

    async fn put_single(&self, key: &str, data: Bytes, md5: [u8; 16]) -> Result<()> {
        let what = format!("PUT {key}");
        let full = self.full_key(key);
        let b64 = base64::engine::general_purpose::STANDARD.encode(md5);
        retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self.put_request(&full, &data).content_md5(&b64);
            let what = &what;
            async move {
                let out = req
                    .customize()
                    // The body is covered by Content-MD5, which is signed: hashing it a
                    // second time for SigV4 (SHA-256) only costs CPU.
                    .disable_payload_signing()
                    .send()
                    .await
                    .map_err(|e| self.classify(what, attempt, &e))?;
                self.reached.store(true, Ordering::Relaxed);
                let kms = is_kms(out.server_side_encryption());
                self.check_etag(out.e_tag(), &md5, kms)
            }
        })
        .await
    }

    /// PUT with `x-amz-checksum-crc32c`. `Ok(false)`: the store did not confirm the checksum
    /// (ignored the header, or refused it with 400/501) — with `auto`, the caller uploads again
    /// with Content-MD5.
    async fn put_single_crc(&self, key: &str, data: Bytes) -> Result<bool> {
        let what = format!("PUT {key}");
        let full = self.full_key(key);
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &data) as u32;
        let b64 = base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes());
        let refused = AtomicBool::new(false);
        let res = retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self.put_request(&full, &data).checksum_crc32_c(&b64);
            let (what, b64, refused) = (&what, &b64, &refused);
            async move {
                let out = match req.customize().disable_payload_signing().send().await {
                    Ok(out) => out,
                    Err(e) => {
                        let status = match &e {
                            SdkError::ServiceError(se) => se.raw().status().as_u16(),
                            _ => 0,
                        };
                        if status == 501
                            || (status == 400
                                && matches!(
                                    e.code(),
                                    Some(
                                        "InvalidArgument"
                                            | "InvalidRequest"
                                            | "NotImplemented"
                                            | "BadRequest"
                                            | "UnsupportedChecksum"
                                    )
                                ))
                        {
                            refused.store(true, Ordering::Relaxed);
                        }
                        return Err(self.classify(what, attempt, &e));
                    }
                };
                self.reached.store(true, Ordering::Relaxed);
                match out.checksum_crc32_c() {
                    Some(v) if v == b64.as_str() => Ok(true),
                    Some(v) => Err(Failure::Retry(format!(
                        "the store's CRC32C {v} is not the CRC32C of what was sent ({b64})"
                    ))),
                    None => Ok(false),
                }
            }
        })
        .await;
        match res {
            Err(_) if refused.load(Ordering::Relaxed) => Ok(false),
            other => other,
        }
    }

    /// A plain MD5 ETag must be the MD5 we sent (KMS-encrypted objects have other ETags:
    /// `kms` says the store reported KMS encryption, e.g. a bucket default).
    fn check_etag(
        &self,
        etag: Option<&str>,
        md5: &[u8; 16],
        kms: bool,
    ) -> std::result::Result<(), Failure> {
        if kms
            || self.s.sse_kms_key_id.is_some()
            || self
                .s
                .server_side_encryption
                .as_deref()
                .is_some_and(|e| e.starts_with("aws:kms"))
        {
            return Ok(());
        }
        let Some(tag) = etag.map(|t| t.trim_matches('"').to_ascii_lowercase()) else {
            return Ok(());
        };
        if tag.len() == 32 && tag.bytes().all(|c| c.is_ascii_hexdigit()) && tag != hex::encode(md5)
        {
            return Err(Failure::Retry(format!(
                "the store's ETag {tag} is not the MD5 of what was sent ({})",
                hex::encode(md5)
            )));
        }
        Ok(())
    }

    async fn put_multipart(&self, key: &str, data: Bytes) -> Result<()> {
        let full = self.full_key(key);
        let len = data.len() as u64;
        let part = part_size_for(len, self.s.part_size);
        let what = format!("multipart PUT {key}");
        let upload_id = retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self
                .client
                .create_multipart_upload()
                .bucket(&self.s.bucket)
                .key(&full)
                .set_storage_class(self.s.storage_class.as_deref().map(Into::into))
                .set_server_side_encryption(
                    self.s.server_side_encryption.as_deref().map(Into::into),
                )
                .set_ssekms_key_id(self.s.sse_kms_key_id.clone());
            let what = &what;
            async move {
                let out = req
                    .send()
                    .await
                    .map_err(|e| self.classify(what, attempt, &e))?;
                out.upload_id().map(str::to_string).ok_or_else(|| {
                    Failure::Retry("CreateMultipartUpload returned no upload id".into())
                })
            }
        })
        .await?;

        let n = len.div_ceil(part);
        let parts = futures::stream::iter(0..n)
            .map(|i| {
                let start = (i * part) as usize;
                let end = ((i + 1) * part).min(len) as usize;
                let body = data.slice(start..end);
                self.upload_part(&full, key, &upload_id, i as i32 + 1, body)
            })
            .buffer_unordered(self.s.upload_concurrency.max(1))
            .try_collect::<Vec<CompletedPart>>()
            .await;
        let mut parts = match parts {
            Ok(p) => p,
            Err(e) => {
                self.abort(&full, &upload_id).await;
                return Err(e);
            }
        };
        parts.sort_by_key(|p| p.part_number());
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let res = retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self
                .client
                .complete_multipart_upload()
                .bucket(&self.s.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(done.clone());
            let what = &what;
            async move {
                match req.send().await {
                    Ok(_) => Ok(()),
                    // An earlier attempt completed it but its answer was lost: HEAD decides.
                    Err(e) if attempt > 1 && e.code() == Some("NoSuchUpload") => Ok(()),
                    Err(e) => Err(self.classify(what, attempt, &e)),
                }
            }
        })
        .await;
        if let Err(e) = res {
            self.abort(&full, &upload_id).await;
            return Err(e);
        }
        Ok(())
    }

    async fn upload_part(
        &self,
        full: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart> {
        let md5: [u8; 16] = Md5::digest(&body).into();
        let b64 = base64::engine::general_purpose::STANDARD.encode(md5);
        let what = format!("PUT {key} part {number}");
        retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self
                .client
                .upload_part()
                .bucket(&self.s.bucket)
                .key(full)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(body.len() as i64)
                .content_md5(&b64)
                .body(ByteStream::from(body.clone()));
            let what = &what;
            async move {
                let out = req
                    .customize()
                    // The body is covered by Content-MD5, which is signed: hashing it a
                    // second time for SigV4 (SHA-256) only costs CPU.
                    .disable_payload_signing()
                    .send()
                    .await
                    .map_err(|e| self.classify(what, attempt, &e))?;
                let kms = is_kms(out.server_side_encryption());
                self.check_etag(out.e_tag(), &md5, kms)?;
                Ok(CompletedPart::builder()
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .part_number(number)
                    .build())
            }
        })
        .await
    }

    /// Abort a multipart upload, best effort (prune aborts what is left over).
    async fn abort(&self, full: &str, upload_id: &str) {
        let r = self
            .client
            .abort_multipart_upload()
            .bucket(&self.s.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(key = full, error = %DisplayErrorContext(&e), "could not abort a failed multipart upload; prune will");
        }
    }

    /// HEAD after upload: the object must be there with exactly the size sent.
    async fn confirm(&self, key: &str, len: u64) -> Result<()> {
        match self.head(key).await? {
            Some(n) if n == len => Ok(()),
            Some(n) => Err(Error::Storage(format!(
                "PUT {key}: the store reports {n} bytes stored, {len} were sent; not using it"
            ))),
            None => Err(Error::Storage(format!(
                "PUT {key}: the store accepted the upload but the object is not there"
            ))),
        }
    }

    async fn get_inner(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>> {
        let full = self.full_key(key);
        let what = match range {
            Some((o, l)) => format!("GET {key} bytes {o}+{l}"),
            None => format!("GET {key}"),
        };
        retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let mut req = self.client.get_object().bucket(&self.s.bucket).key(&full);
            if let Some((o, l)) = range {
                req = req.range(format!("bytes={}-{}", o, o + l - 1));
            }
            let what = &what;
            async move {
                let out = match req.send().await {
                    Ok(o) => o,
                    Err(e) if Self::is_not_found(&e) => {
                        self.reached.store(true, Ordering::Relaxed);
                        return Ok(None);
                    }
                    Err(e) if e.code() == Some("InvalidRange") => {
                        return Err(Failure::Fatal(Error::Storage(format!(
                            "{what}: the object is shorter than that"
                        ))))
                    }
                    Err(e) => return Err(self.classify(what, attempt, &e)),
                };
                self.reached.store(true, Ordering::Relaxed);
                let announced = out.content_length().map(|n| n as u64);
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Failure::Retry(format!("download cut short: {e}")))?
                    .into_bytes();
                if let Some(n) = announced {
                    if body.len() as u64 != n {
                        return Err(Failure::Retry(format!(
                            "download cut short: {} of {n} bytes",
                            body.len()
                        )));
                    }
                }
                if let Some((_, l)) = range {
                    if body.len() as u64 != l {
                        return Err(Failure::Fatal(Error::Storage(format!(
                            "{what}: the object is shorter than that ({} bytes returned)",
                            body.len()
                        ))));
                    }
                }
                Ok(Some(body.to_vec()))
            }
        })
        .await
    }

    /// Abort multipart uploads under the prefix started before `older_than` ago.
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<usize> {
        let cutoff = std::time::SystemTime::now() - older_than;
        let prefix = multipart_prefix(&self.s.prefix);
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        let mut stale = Vec::new();
        loop {
            let what = "list multipart uploads".to_string();
            let page = retry::run(&self.s.retry, &self.stats, &what, |attempt| {
                let req = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.s.bucket)
                    .prefix(&prefix)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone());
                let what = &what;
                async move {
                    req.send()
                        .await
                        .map_err(|e| self.classify(what, attempt, &e))
                }
            })
            .await?;
            for u in page.uploads() {
                let started = u
                    .initiated()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok());
                if let (Some(k), Some(id), Some(t)) = (u.key(), u.upload_id(), started) {
                    if t < cutoff {
                        stale.push((k.to_string(), id.to_string()));
                    }
                }
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_string);
                id_marker = page.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        for (k, id) in &stale {
            tracing::info!(key = %k, "aborting stale multipart upload");
            self.abort(k, id).await;
        }
        Ok(stale.len())
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        tracing::info!("{}: {}", self.s.describe(), self.stats.summary());
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let len = data.len() as u64;
        let data = Bytes::from(data);
        let crc = match self.s.upload_checksum {
            UploadChecksum::Md5 => false,
            UploadChecksum::Crc32c => true,
            UploadChecksum::Auto => !self.crc_refused.load(Ordering::Relaxed),
        };
        if len >= self.s.multipart_threshold.max(MIN_PART) {
            self.put_multipart(key, data).await?;
        } else if crc && self.put_single_crc(key, data.clone()).await? {
            // Stored, and the store confirmed the CRC32C it verified.
        } else if self.s.upload_checksum == UploadChecksum::Crc32c {
            return Err(Error::Storage(format!(
                "PUT {key}: {} did not confirm the x-amz-checksum-crc32c it was sent: set repository.upload_checksum = \"md5\" (or \"auto\")",
                self.s.describe()
            )));
        } else {
            if crc && !self.crc_refused.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    "{} does not confirm CRC32C checksums: uploads carry Content-MD5 from now on",
                    self.s.describe()
                );
            }
            let md5: [u8; 16] = Md5::digest(&data).into();
            self.put_single(key, data, md5).await?;
        }
        self.confirm(key, len).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_inner(key, None).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.get_inner(key, Some((offset, len)))
            .await?
            .ok_or_else(|| Error::Storage(format!("GET {key}: no such object")))
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let full = self.full_key(key);
        let what = format!("HEAD {key}");
        retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self.client.head_object().bucket(&self.s.bucket).key(&full);
            let what = &what;
            async move {
                match req.send().await {
                    Ok(o) => {
                        self.reached.store(true, Ordering::Relaxed);
                        Ok(Some(o.content_length().unwrap_or(0).max(0) as u64))
                    }
                    Err(e) if Self::is_not_found(&e) => {
                        self.reached.store(true, Ordering::Relaxed);
                        Ok(None)
                    }
                    Err(e) => Err(self.classify(what, attempt, &e)),
                }
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let full = self.full_key(prefix);
        let what = format!("LIST {prefix}");
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let page = retry::run(&self.s.retry, &self.stats, &what, |attempt| {
                let req = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.s.bucket)
                    .prefix(&full)
                    .set_continuation_token(token.clone());
                let what = &what;
                async move {
                    req.send()
                        .await
                        .map_err(|e| self.classify(what, attempt, &e))
                }
            })
            .await?;
            self.reached.store(true, Ordering::Relaxed);
            for o in page.contents() {
                if let Some(k) = o.key() {
                    let key = self.strip(k);
                    // Anyone who can write to the bucket can name an object anything: a name
                    // that could leave a folder when joined to it is never passed on.
                    if !super::is_safe_key(key) {
                        tracing::warn!(
                            "ignoring object {k:?} in the bucket: not a repository name"
                        );
                        continue;
                    }
                    out.push(ObjectInfo {
                        key: key.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
        let what = format!("DELETE {key}");
        retry::run(&self.s.retry, &self.stats, &what, |attempt| {
            let req = self
                .client
                .delete_object()
                .bucket(&self.s.bucket)
                .key(&full);
            let what = &what;
            async move {
                match req.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if Self::is_not_found(&e) => Ok(()),
                    Err(e) => Err(self.classify(what, attempt, &e)),
                }
            }
        })
        .await
    }

    async fn remove_stale_temporaries(&self, age: Duration) -> Result<usize> {
        self.abort_stale_uploads(age).await
    }

    fn retry_stats(&self) -> Option<RetryStats> {
        Some(self.stats.clone())
    }

    fn upload_concurrency(&self) -> usize {
        self.s.upload_concurrency.max(1)
    }
}

/// Where keepsake's own multipart uploads live: packs are the only objects uploaded in parts.
/// Stale uploads are looked for there only — never elsewhere in the bucket, where (with an
/// empty prefix) other applications' uploads would be aborted too.
fn multipart_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        "packs/".into()
    } else {
        format!("{prefix}/packs/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13, defect 7): with an empty prefix the stale-upload sweep listed
    /// (and aborted) every multipart upload in the bucket.
    #[test]
    fn stale_uploads_are_looked_for_under_packs_only() {
        assert_eq!(multipart_prefix(""), "packs/");
        assert_eq!(
            multipart_prefix(&S3Settings::new("b", "/team/keepsake/").prefix),
            "team/keepsake/packs/"
        );
    }

    #[test]
    fn part_size_respects_the_part_limit_and_minimum() {
        assert_eq!(part_size_for(100 << 20, 8 << 20), 8 << 20);
        assert_eq!(part_size_for(100 << 20, 1 << 20), 5 << 20);
        // 1 TiB needs parts of at least 1 TiB / 10,000 ≈ 105 MiB.
        let tib = 1u64 << 40;
        let p = part_size_for(tib, 8 << 20);
        assert!(tib.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % (1 << 20), 0);
    }

    #[test]
    fn keys_are_placed_under_the_prefix() {
        let s = S3Settings::new("b", "/team/keepsake/");
        assert_eq!(s.prefix, "team/keepsake");
        assert_eq!(S3Settings::new("b", "").prefix, "");
    }
}
