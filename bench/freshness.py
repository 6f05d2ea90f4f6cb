"""Benchmark 2, freshness over time: does frame age grow during a long run? (Per camera count
figures come with the throughput benchmark.) Four cameras run the default model for 60 s; the
frame age p50/p99 of the first and the last 10 s are compared."""

from __future__ import annotations

import time

from bench.report import Report, Row
from bench.stack import Stack, ages_ms


def run(report: Report, quick: bool = False) -> None:
    duration = 20.0 if quick else 60.0
    with Stack(4, ["blazeface"]) as stack:
        stack.wait_results()
        begin = time.time()
        time.sleep(duration)
        end = time.time()
        first = stack.collector.window(begin, begin + 10)
        last = stack.collector.window(end - 10, end)
        p50a, p99a = ages_ms(first)
        p50b, p99b = ages_ms(last)
        report.add(
            Row(
                "freshness",
                f"4 cameras, first vs last 10 s of {duration:.0f} s",
                {
                    "first_p50_ms": p50a,
                    "first_p99_ms": p99a,
                    "last_p50_ms": p50b,
                    "last_p99_ms": p99b,
                    "results": len(stack.collector.window(begin, end)),
                },
                ratio=p50b / p50a,
                target="flat: last/first p50 <= 1.2",
                met=p50b / p50a <= 1.2,
            )
        )
