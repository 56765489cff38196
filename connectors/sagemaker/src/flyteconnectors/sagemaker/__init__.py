"""SageMaker connectors."""
