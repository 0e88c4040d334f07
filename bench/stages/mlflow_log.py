"""Log one prepared payload to MLflow; runs in MLflow's own virtualenv (see bench/stages/export.py).

Usage: <mlflow venv>/bin/python bench/stages/mlflow_log.py payload.json
Only the standard library and mlflow: the kit's packages are not installed there.
Prints the MLflow run id on the last line.
"""

import json
import sys

import mlflow


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    mlflow.set_experiment(data["experiment"])
    with mlflow.start_run(run_name=data["run_name"]) as run:
        mlflow.set_tags(data["tags"])
        mlflow.log_params(data["params"])
        mlflow.log_metrics(data["metrics"])
        for artifact in data["artifacts"]:
            mlflow.log_artifact(artifact)
        print(f"[export] mlflow run {run.info.run_id} in {mlflow.get_tracking_uri()}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1]))
    except mlflow.exceptions.MlflowException as err:  # the server's answer, in one paragraph
        print(f"mlflow: {err.message}", file=sys.stderr)
        raise SystemExit(1) from None
