///The `restock` workflow. Build a call with [`restock()`]; start it with `Engine::start`, await it in another workflow (a child run), or await it directly (runs as plain async code).
#[allow(non_camel_case_types)]
struct restock {
    __input: (Vec<String>, u64),
}
#[must_use = "a workflow call does nothing unless started or awaited"]
fn restock(items: Vec<String>, budget: u64) -> restock {
    restock {
        __input: (items, budget),
    }
}
impl restock {
    #[allow(clippy::needless_return)]
    async fn restock(items: Vec<String>, mut budget: u64) -> Result<u64, String> {
        let mut spent = 0;
        for item in items {
            let price = quote(item.clone()).await?;
            if price > budget {
                continue;
            }
            buy(item, price).await?;
            budget -= price;
            spent += price;
        }
        Ok(spent)
    }
}
impl ::core::future::IntoFuture for restock {
    type Output = Result<u64, String>;
    type IntoFuture = ::flow::__private::BoxFuture<Result<u64, String>>;
    fn into_future(self) -> Self::IntoFuture {
        let (items, budget) = self.__input;
        ::std::boxed::Box::pin(restock::restock(items, budget))
    }
}
impl ::flow::Workflow for restock {
    const NAME: &'static str = "restock";
    const FINGERPRINT: u64 = 14245105716689523509u64;
    type Input = (Vec<String>, u64);
    type Output = Result<u64, String>;
    fn into_input(self) -> Self::Input {
        self.__input
    }
    fn from_input(input: Self::Input) -> Self {
        restock { __input: input }
    }
    #[allow(
        unused_mut,
        unused_variables,
        unused_imports,
        dead_code,
        unused_braces,
        unreachable_code,
        path_statements,
        unused_assignments,
        redundant_semicolons,
        non_snake_case,
        dependency_on_unit_never_type_fallback,
        clippy::all,
        clippy::pedantic,
        clippy::nursery
    )]
    fn step(
        __flow_machine: &mut ::flow::__private::Machine,
    ) -> ::core::result::Result<
        ::flow::__private::Transition,
        ::flow::__private::StepFault,
    > {
        #[allow(non_camel_case_types, non_snake_case)]
        struct __FlowFrame<T1, T2, T3, T4, T5, T7, P0, P1> {
            s1: ::core::option::Option<T1>,
            s2: ::core::option::Option<T2>,
            s3: ::core::option::Option<T3>,
            s4: ::core::option::Option<T4>,
            s5: ::core::option::Option<T5>,
            s7: ::core::option::Option<T7>,
            p0: ::flow::__private::PhantomData<P0>,
            p1: ::flow::__private::PhantomData<P1>,
        }
        let (__flow_pc, __flow_frame, __flow_ctl) = __flow_machine.parts();
        let __flow_f = ::flow::__private::frame(
            __flow_frame,
            || __FlowFrame {
                s1: ::core::option::Option::None,
                s2: ::core::option::Option::None,
                s3: ::core::option::Option::None,
                s4: ::core::option::Option::None,
                s5: ::core::option::Option::None,
                s7: ::core::option::Option::None,
                p0: ::flow::__private::PhantomData,
                p1: ::flow::__private::PhantomData,
            },
        );
        for (__flow_index, __flow_bytes) in __flow_ctl.take_persisted() {
            match __flow_index {
                1u32 => {
                    __flow_f.s1 = ::core::option::Option::Some(
                        __flow_ctl.decode_slot(&__flow_bytes, "`budget`")?,
                    );
                }
                2u32 => {
                    __flow_f.s2 = ::core::option::Option::Some(
                        __flow_ctl.decode_slot(&__flow_bytes, "`spent`")?,
                    );
                }
                3u32 => {
                    __flow_f.s3 = ::core::option::Option::Some(
                        __flow_ctl
                            .decode_slot(
                                &__flow_bytes,
                                "what the `for` loop at line 4 iterates over",
                            )?,
                    );
                }
                4u32 => {
                    __flow_f.s4 = ::core::option::Option::Some(
                        __flow_ctl
                            .decode_slot(
                                &__flow_bytes,
                                "the position of the `for` loop at line 4",
                            )?,
                    );
                }
                5u32 => {
                    __flow_f.s5 = ::core::option::Option::Some(
                        __flow_ctl.decode_slot(&__flow_bytes, "`item`")?,
                    );
                }
                7u32 => {
                    __flow_f.s7 = ::core::option::Option::Some(
                        __flow_ctl.decode_slot(&__flow_bytes, "`price`")?,
                    );
                }
                _ => {}
            }
        }
        loop {
            match *__flow_pc {
                0u32 => {
                    let (items, mut budget): (Vec<String>, u64) = __flow_ctl
                        .take_input::<(Vec<String>, u64)>()?;
                    let mut spent = 0;
                    let mut __flow_items_1 = ::flow::__private::for_items(items);
                    let mut __flow_pos_2: usize = 0;
                    {
                        {
                            __flow_f.s1 = ::core::option::Option::Some(budget);
                        }
                        {
                            __flow_f.s2 = ::core::option::Option::Some(spent);
                        }
                        {
                            __flow_f.s3 = ::core::option::Option::Some(__flow_items_1);
                            __flow_ctl.mark_dirty(3u32);
                        }
                        {
                            __flow_f.s4 = ::core::option::Option::Some(__flow_pos_2);
                        }
                        *__flow_pc = 2u32;
                        continue;
                    }
                }
                2u32 => {
                    let mut __flow_items_1 = __flow_ctl
                        .take_slot(
                            &mut __flow_f.s3,
                            "what the `for` loop at line 4 iterates over",
                        )?;
                    let mut __flow_pos_2 = __flow_ctl
                        .take_slot(
                            &mut __flow_f.s4,
                            "the position of the `for` loop at line 4",
                        )?;
                    match ::flow::__private::for_next(
                        &mut __flow_items_1,
                        &mut __flow_pos_2,
                    ) {
                        ::core::option::Option::Some(item) => {
                            {
                                __flow_f.s3 = ::core::option::Option::Some(__flow_items_1);
                            }
                            {
                                __flow_f.s4 = ::core::option::Option::Some(__flow_pos_2);
                            }
                            {
                                __flow_f.s5 = ::core::option::Option::Some(item);
                            }
                            *__flow_pc = 3u32;
                            continue;
                        }
                        _ => {
                            *__flow_pc = 1u32;
                            continue;
                        }
                    }
                }
                3u32 => {
                    let mut item = __flow_ctl.take_slot(&mut __flow_f.s5, "`item`")?;
                    {
                        let __flow_op = quote(item.clone());
                        {
                            __flow_f.s5 = ::core::option::Option::Some(item);
                        }
                        {
                            __flow_ctl.save_slot(1u32, &__flow_f.s1, "`budget`")?;
                        }
                        {
                            __flow_ctl.save_slot(2u32, &__flow_f.s2, "`spent`")?;
                        }
                        {
                            __flow_ctl
                                .save_slot_once(
                                    3u32,
                                    &__flow_f.s3,
                                    "what the `for` loop at line 4 iterates over",
                                )?;
                        }
                        {
                            __flow_ctl
                                .save_slot(
                                    4u32,
                                    &__flow_f.s4,
                                    "the position of the `for` loop at line 4",
                                )?;
                        }
                        {
                            __flow_ctl.save_slot(5u32, &__flow_f.s5, "`item`")?;
                        }
                        {
                            __flow_ctl.save_slot(7u32, &__flow_f.s7, "`price`")?;
                        }
                        *__flow_pc = 4u32;
                        return __flow_ctl.suspend(&mut __flow_f.p0, __flow_op, 0u32);
                    }
                }
                4u32 => {
                    let mut budget = __flow_ctl.take_slot(&mut __flow_f.s1, "`budget`")?;
                    let __flow_await_3 = __flow_ctl.take_output(&__flow_f.p0, "quote")?;
                    let price = match ::flow::__private::QuestionMark::branch(
                        __flow_await_3,
                    ) {
                        ::core::ops::ControlFlow::Continue(__flow_value) => __flow_value,
                        ::core::ops::ControlFlow::Break(__flow_residual) => {
                            return {
                                let __flow_output: Result<u64, String> = ::flow::__private::FromQuestionResidual::from_residual(
                                    __flow_residual,
                                );
                                __flow_ctl.complete::<Result<u64, String>>(&__flow_output)
                            };
                        }
                    };
                    if price > budget {
                        {
                            {
                                __flow_f.s1 = ::core::option::Option::Some(budget);
                            }
                            *__flow_pc = 6u32;
                            continue;
                        }
                    } else {
                        ();
                        {
                            {
                                __flow_f.s1 = ::core::option::Option::Some(budget);
                            }
                            {
                                __flow_f.s7 = ::core::option::Option::Some(price);
                            }
                            *__flow_pc = 5u32;
                            continue;
                        }
                    }
                }
                6u32 => {
                    *__flow_pc = 2u32;
                    continue;
                }
                5u32 => {
                    let mut item = __flow_ctl.take_slot(&mut __flow_f.s5, "`item`")?;
                    let mut price = __flow_ctl.take_slot(&mut __flow_f.s7, "`price`")?;
                    {
                        let __flow_op = buy(item, price);
                        {
                            __flow_f.s7 = ::core::option::Option::Some(price);
                        }
                        {
                            __flow_ctl.save_slot(1u32, &__flow_f.s1, "`budget`")?;
                        }
                        {
                            __flow_ctl.save_slot(2u32, &__flow_f.s2, "`spent`")?;
                        }
                        {
                            __flow_ctl
                                .save_slot_once(
                                    3u32,
                                    &__flow_f.s3,
                                    "what the `for` loop at line 4 iterates over",
                                )?;
                        }
                        {
                            __flow_ctl
                                .save_slot(
                                    4u32,
                                    &__flow_f.s4,
                                    "the position of the `for` loop at line 4",
                                )?;
                        }
                        {
                            __flow_ctl.save_slot(5u32, &__flow_f.s5, "`item`")?;
                        }
                        {
                            __flow_ctl.save_slot(7u32, &__flow_f.s7, "`price`")?;
                        }
                        *__flow_pc = 7u32;
                        return __flow_ctl.suspend(&mut __flow_f.p1, __flow_op, 1u32);
                    }
                }
                7u32 => {
                    let mut budget = __flow_ctl.take_slot(&mut __flow_f.s1, "`budget`")?;
                    let mut spent = __flow_ctl.take_slot(&mut __flow_f.s2, "`spent`")?;
                    let mut price = __flow_ctl.take_slot(&mut __flow_f.s7, "`price`")?;
                    let __flow_await_4 = __flow_ctl.take_output(&__flow_f.p1, "buy")?;
                    match ::flow::__private::QuestionMark::branch(__flow_await_4) {
                        ::core::ops::ControlFlow::Continue(__flow_value) => __flow_value,
                        ::core::ops::ControlFlow::Break(__flow_residual) => {
                            return {
                                let __flow_output: Result<u64, String> = ::flow::__private::FromQuestionResidual::from_residual(
                                    __flow_residual,
                                );
                                __flow_ctl.complete::<Result<u64, String>>(&__flow_output)
                            };
                        }
                    };
                    budget -= price;
                    spent += price;
                    {
                        {
                            __flow_f.s1 = ::core::option::Option::Some(budget);
                        }
                        {
                            __flow_f.s2 = ::core::option::Option::Some(spent);
                        }
                        *__flow_pc = 2u32;
                        continue;
                    }
                }
                1u32 => {
                    let mut spent = __flow_ctl.take_slot(&mut __flow_f.s2, "`spent`")?;
                    return {
                        let __flow_output: Result<u64, String> = Ok(spent);
                        __flow_ctl.complete::<Result<u64, String>>(&__flow_output)
                    };
                }
                __flow_other => {
                    return ::core::result::Result::Err(
                        __flow_ctl.unknown_state(__flow_other),
                    );
                }
            }
        }
    }
    fn signals() -> &'static ::flow::SignalSites {
        static SITES: ::flow::SignalSites = ::flow::SignalSites {
            closed: false,
            sites: &[],
        };
        &SITES
    }
    fn graph() -> &'static ::flow::StateGraph {
        static GRAPH: ::flow::StateGraph = ::flow::StateGraph {
            workflow: "restock",
            states: &[
                ::flow::StateInfo {
                    name: "quote",
                    line: 5u32,
                },
                ::flow::StateInfo {
                    name: "buy",
                    line: 9u32,
                },
            ],
            transitions: &[
                (0u32, 0u32),
                (0u32, 1u32),
                (0u32, 4294967295u32),
                (1u32, 0u32),
                (1u32, 4294967295u32),
                (4294967294u32, 0u32),
                (4294967294u32, 4294967295u32),
            ],
        };
        &GRAPH
    }
    fn slots() -> &'static [::flow::SlotInfo] {
        &[
            ::flow::SlotInfo {
                slot: 1u32,
                name: "budget",
                ty: ::core::option::Option::Some(::core::stringify!(u64)),
                line: 2u32,
            },
            ::flow::SlotInfo {
                slot: 2u32,
                name: "spent",
                ty: ::core::option::Option::None,
                line: 3u32,
            },
            ::flow::SlotInfo {
                slot: 3u32,
                name: "what the `for` loop at line 4 iterates over",
                ty: ::core::option::Option::None,
                line: 4u32,
            },
            ::flow::SlotInfo {
                slot: 4u32,
                name: "the position of the `for` loop at line 4",
                ty: ::core::option::Option::None,
                line: 4u32,
            },
            ::flow::SlotInfo {
                slot: 5u32,
                name: "item",
                ty: ::core::option::Option::None,
                line: 4u32,
            },
            ::flow::SlotInfo {
                slot: 7u32,
                name: "price",
                ty: ::core::option::Option::None,
                line: 5u32,
            },
        ]
    }
}
impl ::flow::DurableOp for restock {
    type Output = Result<u64, String>;
    fn into_request(
        self,
    ) -> ::core::result::Result<::flow::OpRequest, ::flow::CodecError> {
        ::core::result::Result::Ok(::flow::OpRequest::Child {
            workflow: ::std::string::ToString::to_string("restock"),
            input: ::flow::codec::encode(
                &self.__input,
                || ::std::format!("input of workflow `{}`", "restock"),
            )?,
        })
    }
}
