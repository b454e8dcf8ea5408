//! What the AWS executors (`fargate`, `lambda`) share: how an SDK error
//! becomes an [`ExecutorError`] of the right kind.

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use ork_core::executor::ExecutorError;

/// An SDK error as one line (the operation, the service's error code and
/// message), and of which kind: no credentials found is not configured;
/// throttling, server errors, timeouts and connection failures are
/// transient; any other answer of the service (`AccessDeniedException`,
/// `InvalidParameterException`, `ClientException` for an unknown task
/// definition, `ClusterNotFoundException`, Lambda's `ResourceNotFoundException`…) is
/// permanent.
pub(crate) fn sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> ExecutorError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{what}: {code}: {message}"),
        (Some(code), None) => format!("{what}: {code}"),
        // Not the service's answer (no credentials, no connection): the
        // root cause, on one line; the SDK's full chain is for debug logs.
        _ => {
            tracing::debug!(error = %DisplayErrorContext(&err), "{what}");
            format!("{what}: {}", root_cause(&err))
        }
    };
    if lacks_credentials(&err) {
        return ExecutorError::NotConfigured(message);
    }
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            status == 429
                || status >= 500
                || err.code().is_some_and(|code| {
                    code.contains("Throttl")
                        || matches!(
                            code,
                            "RequestLimitExceeded"
                                | "ServerException"
                                | "ServiceUnavailable"
                                | "ServiceUnavailableException"
                        )
                })
        }
        _ => false,
    };
    if transient {
        ExecutorError::Transient(message)
    } else {
        ExecutorError::Permanent(message)
    }
}

/// The innermost error of a chain, as one line.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    let line = text.lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Whether the SDK gave up because the credentials chain found nothing.
fn lacks_credentials(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<CredentialsError>()
            .is_some_and(|c| matches!(c, CredentialsError::CredentialsNotLoaded(_)))
        {
            return true;
        }
        source = e.source();
    }
    false
}
