"""OpenAI chat completions and a Batch API job in one workflow.

Against the local fake (no OpenAI account needed):

    flyteconnectors fake openai --port 8765 &
    export FLYTECONNECTORS_OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=sk-anything
    pyflyte run examples/openai_example.py review_pipeline --text "The keyboard is great but loud."

Against OpenAI: unset FLYTECONNECTORS_OPENAI_BASE_URL and export a real OPENAI_API_KEY.
"""

from __future__ import annotations

from flytekit import workflow
from flytekit.types.file import FlyteFile

from flyteconnectors.openai.task import OpenAIBatchTask, OpenAIChatTask

summarize = OpenAIChatTask(
    "summarize",
    model="gpt-4o-mini",
    system="You summarise product reviews in one sentence.",
    user="Review: {{ .inputs.text }}",
    inputs={"text": str},
    outputs={"summary": str},
    params={"temperature": 0.2, "max_completion_tokens": 200},
)

classify = OpenAIChatTask(
    "classify",
    model="gpt-4o-mini",
    system="Classify the sentiment of the review.",
    user="{{ .inputs.text }}",
    inputs={"text": str},
    outputs={"sentiment": str, "confidence": float},
    response_schema="outputs",  # structured output: a JSON schema derived from the outputs
)

answer_all = OpenAIBatchTask(
    "answer_all",
    model="gpt-4o-mini",
    system="Answer in one short sentence.",
    params={"max_completion_tokens": 100},
)


@workflow
def review_pipeline(
    text: str = "The keyboard is great but loud.",
    questions: list[str] = ["Is a loud keyboard a problem in an office?", "What makes a keyboard quiet?"],  # noqa: B006
) -> tuple[str, str, float, FlyteFile, dict[str, int]]:
    summary = summarize(text=text)
    sentiment, confidence = classify(text=text)
    results = answer_all(prompts=questions)
    return summary, sentiment, confidence, results.output_file, results.request_counts
