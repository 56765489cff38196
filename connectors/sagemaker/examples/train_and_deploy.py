"""Train a model, deploy it to an endpoint, ask the endpoint for a prediction.

Against the local fake (no AWS account needed):

    flyteconnectors fake sagemaker --port 8790 &
    export AWS_ENDPOINT_URL_SAGEMAKER=http://127.0.0.1:8790
    export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8790
    export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    pyflyte run examples/train_and_deploy.py train_deploy_predict --max_depth 7

(``FLYTECONNECTORS_SAGEMAKER_ENDPOINT_URL`` / ``FLYTECONNECTORS_SAGEMAKER_RUNTIME_ENDPOINT_URL`` do the same.)
The fake reports each job InProgress once, then Completed, and each endpoint Creating, then InService; its
endpoints answer by echoing the request body.

Against SageMaker: drop those variables, give the process AWS credentials, and set ROLE, IMAGE and the S3 paths
below to yours.
"""

from __future__ import annotations

from flytekit import kwtypes, task, workflow

from flyteconnectors.sagemaker import Channel, EndpointConfig, InvokeConfig, ModelSpec, TrainingConfig
from flyteconnectors.sagemaker.task import SageMakerEndpointTask, SageMakerInvokeTask, SageMakerTrainingTask

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

train = SageMakerTrainingTask(
    name="examples.sagemaker.train",
    config=TrainingConfig(
        role_arn=ROLE,
        image=IMAGE,
        output_path="s3://my-bucket/churn/models",
        channels=[Channel(name="train", s3_uri="{{inputs.train_data}}", content_type="text/csv")],
        hyperparameters={"objective": "binary:logistic", "num_round": 50, "max_depth": "{{inputs.max_depth}}"},
        instance_type="ml.m5.xlarge",
        max_runtime_seconds=3600,
        tags={"team": "churn"},
    ),
    inputs=kwtypes(train_data=str, max_depth=int),
    outputs={"model_artifact": str, "metrics": dict[str, float]},
)

deploy = SageMakerEndpointTask(
    name="examples.sagemaker.deploy",
    config=EndpointConfig(
        model=ModelSpec(image=IMAGE, role_arn=ROLE, model_data_url="{{inputs.model_artifact}}"),
        instance_type="ml.m5.large",
    ),
    inputs=kwtypes(model_artifact=str),
    outputs={"endpoint_name": str, "endpoint_arn": str},
)

predict = SageMakerInvokeTask(
    name="examples.sagemaker.predict",
    config=InvokeConfig(endpoint_name="{{inputs.endpoint_name}}", content_type="text/csv", payload_input="rows"),
    inputs=kwtypes(endpoint_name=str, rows=list[list[float]]),
    outputs={"response": str},
)


@task
def summarize(metrics: dict[str, float], endpoint_name: str, response: str) -> str:
    scores = ", ".join(f"{k}={v:g}" for k, v in sorted(metrics.items()))
    return f"endpoint {endpoint_name} ({scores}) answered: {response.strip()}"


@workflow
def train_deploy_predict(train_data: str = "s3://my-bucket/churn/train.csv", max_depth: int = 6) -> str:
    trained = train(train_data=train_data, max_depth=max_depth)
    endpoint = deploy(model_artifact=trained.model_artifact)
    answer = predict(endpoint_name=endpoint.endpoint_name, rows=[[42.0, 3.0, 1.0], [18.0, 0.0, 0.0]])
    return summarize(metrics=trained.metrics, endpoint_name=endpoint.endpoint_name, response=answer.response)
