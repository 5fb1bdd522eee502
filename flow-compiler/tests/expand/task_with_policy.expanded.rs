///One call of the [`charge()`] task with its arguments: await it in a `#[workflow]` (journaled, retried) or anywhere else (runs the body).
#[allow(non_camel_case_types)]
#[derive(::flow::__private::serde::Serialize, ::flow::__private::serde::Deserialize)]
#[serde(crate = "::flow::__private::serde")]
struct charge {
    card: String,
    cents: u64,
}
#[must_use = "a task call does nothing unless awaited"]
fn charge(card: String, cents: u64) -> charge {
    charge { card, cents }
}
impl ::flow::__private::Task for charge {
    const NAME: &'static str = ::core::stringify!(charge);
    type Output = Result<String, PaymentError>;
    fn policy() -> ::flow::TaskPolicy {
        ::flow::TaskPolicy {
            retry: ::flow::RetryPolicy {
                max_attempts: 5u32,
                initial_interval: ::core::time::Duration::from_millis(200u64),
                backoff_rate: 2f64,
                ..::core::default::Default::default()
            },
            timeout: ::core::option::Option::Some(
                ::core::time::Duration::from_millis(30000u64),
            ),
        }
    }
    fn run(self) -> ::flow::__private::BoxFuture<Result<String, PaymentError>> {
        #[allow(clippy::needless_return)]
        async fn __flow_task_body(
            card: String,
            cents: u64,
        ) -> Result<String, PaymentError> {
            gateway::charge(&card, cents).await
        }
        let charge { card, cents } = self;
        ::std::boxed::Box::pin(__flow_task_body(card, cents))
    }
    #[allow(unused_variables)]
    fn classify(
        __flow_output: &Result<String, PaymentError>,
    ) -> ::flow::__private::AttemptClass {
        match __flow_output {
            ::core::result::Result::Ok(_) => ::flow::__private::AttemptClass::Success,
            ::core::result::Result::Err(__flow_error) => {
                let __flow_text = ::std::format!("{:?}", __flow_error);
                if is_declined(__flow_error) {
                    ::flow::__private::AttemptClass::NonRetryable(__flow_text)
                } else {
                    ::flow::__private::AttemptClass::Retryable(__flow_text)
                }
            }
        }
    }
    fn from_failure(
        __flow_failure: ::flow::TaskFailure,
    ) -> ::core::option::Option<Result<String, PaymentError>> {
        ::core::option::Option::Some(
            ::core::result::Result::Err(::core::convert::From::from(__flow_failure)),
        )
    }
}
impl ::flow::DurableOp for charge {
    type Output = Result<String, PaymentError>;
    fn failure(
        __flow_output: &Result<String, PaymentError>,
    ) -> ::core::option::Option<::std::string::String> {
        match <Self as ::flow::__private::Task>::classify(__flow_output) {
            ::flow::__private::AttemptClass::Success => ::core::option::Option::None,
            ::flow::__private::AttemptClass::Retryable(__flow_text)
            | ::flow::__private::AttemptClass::NonRetryable(__flow_text) => {
                ::core::option::Option::Some(__flow_text)
            }
        }
    }
    fn into_request(
        self,
    ) -> ::core::result::Result<::flow::OpRequest, ::flow::CodecError> {
        ::core::result::Result::Ok(::flow::OpRequest::Task {
            name: ::std::string::ToString::to_string(
                <Self as ::flow::__private::Task>::NAME,
            ),
            args: ::flow::codec::encode(
                &self,
                || {
                    ::std::format!(
                        "arguments of task `{}`", < Self as ::flow::__private::Task >
                        ::NAME
                    )
                },
            )?,
            policy: <Self as ::flow::__private::Task>::policy(),
        })
    }
}
impl ::core::future::IntoFuture for charge {
    type Output = Result<String, PaymentError>;
    type IntoFuture = ::flow::__private::BoxFuture<Result<String, PaymentError>>;
    fn into_future(self) -> Self::IntoFuture {
        ::flow::__private::Task::run(self)
    }
}
::flow::__private::inventory::submit! {
    ::flow::__private::TaskRegistration { name : < charge as ::flow::__private::Task >
    ::NAME, run : ::flow::__private::erased_run:: < charge >, failure_output :
    ::flow::__private::erased_failure_output:: < charge >, defined_at :
    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(charge), " (",
    ::core::file!(), ":", ::core::line!(), ")"), }
}
