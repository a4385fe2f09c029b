"""Offline checks of the Helm chart and the Dockerfile with the real tools.

helm (in ./.tools/bin), kubernetes-validate and hadolint (in the virtualenv) are installed by
scripts/install-deploy-tools.sh when missing; if that fails, the tests fail -- nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm"
MULTI = CHART / "ci" / "multi-replica-postgres.yaml"
K8S_VERSION = "1.32.0"
GUARD_MSG = "SQLite cannot be shared between pods"
PG_URL = "postgresql+psycopg://relay:pw@db:5432/relay"


class Tools:
    def __init__(self, helm: Path, kubernetes_validate: Path, hadolint: Path) -> None:
        self.helm = helm
        self.kubernetes_validate = kubernetes_validate
        self.hadolint = hadolint

    def run(self, *args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120
        )

    def template(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm, "template", "relay", CHART, "--namespace", "relay", *args)

    def render(self, *args: str | Path) -> list[dict]:
        result = self.template(*args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def tools() -> Tools:
    venv_bin = Path(sys.executable).parent
    found = Tools(ROOT / ".tools" / "bin" / "helm", venv_bin / "kubernetes-validate", venv_bin / "hadolint")
    if not all(p.exists() for p in (found.helm, found.kubernetes_validate, found.hadolint)):
        env = {**os.environ, "VENV": str(venv_bin.parent)}
        installed = subprocess.run(
            [str(ROOT / "scripts" / "install-deploy-tools.sh")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=600,
        )
        assert installed.returncode == 0, f"install-deploy-tools.sh failed:\n{installed.stdout}\n{installed.stderr}"
    for path in (found.helm, found.kubernetes_validate, found.hadolint):
        assert path.exists(), f"{path} missing after scripts/install-deploy-tools.sh"
    return found


@pytest.fixture(scope="session")
def default_docs(tools: Tools) -> list[dict]:
    return tools.render()


@pytest.fixture(scope="session")
def multi_docs(tools: Tools) -> list[dict]:
    return tools.render("-f", MULTI)


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name} not rendered exactly once"
    return matches[0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# --- lint and strict schema validation -------------------------------------------------


@pytest.mark.parametrize("values", [None, MULTI], ids=["default", "multi-replica-postgres"])
def test_helm_lint_strict(tools: Tools, values: Path | None) -> None:
    args = ["-f", values] if values else []
    result = tools.run(tools.helm, "lint", "--strict", CHART, *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-f", MULTI],
        ["--set", "existingSecret=relay-env", "--set", "database.external=true", "--set", "mode=split"],
        ["--set", "persistence.enabled=false", "--set", "ingress.enabled=true"],
    ],
    ids=["default", "multi-replica-postgres", "existing-secret-split", "emptydir-ingress"],
)
def test_render_validates_strictly(tools: Tools, args: list) -> None:
    rendered = tools.template(*args)
    assert rendered.returncode == 0, rendered.stderr
    result = tools.run(tools.kubernetes_validate, "--strict", "-k", K8S_VERSION, "--quiet", "-", stdin=rendered.stdout)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_catches_misspelt_field(tools: Tools) -> None:
    rendered = tools.template().stdout.replace("revisionHistoryLimit", "revisionHistoryLimt")
    result = tools.run(tools.kubernetes_validate, "--strict", "-k", K8S_VERSION, "--quiet", "-", stdin=rendered)
    assert result.returncode != 0


@pytest.mark.parametrize(
    "args",
    [["--set", "mode=splt"], ["--set", "api.replicass=2"], ["--set", "database.url=mysql://db/relay"]],
    ids=["bad-mode", "misspelt-key", "unsupported-database"],
)
def test_values_schema_rejects(tools: Tools, args: list) -> None:
    result = tools.template(*args)
    assert result.returncode != 0
    assert "schema" in result.stderr


# --- the SQLite guard and other template-time checks ------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--set", "api.replicas=3"], ["--set", "mode=split"], ["--set", "api.autoscaling.enabled=true"]],
    ids=["replicas", "split", "hpa"],
)
def test_several_pods_without_postgres_fail(tools: Tools, args: list) -> None:
    result = tools.template(*args)
    assert result.returncode != 0
    assert GUARD_MSG in result.stderr
    assert "database.url=postgresql+psycopg://" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "api.replicas=3", "--set", f"database.url={PG_URL}"],
        ["--set", "mode=split", "--set", "existingSecret=relay-env", "--set", "database.external=true"],
    ],
    ids=["url", "existing-secret"],
)
def test_several_pods_with_postgres_render(tools: Tools, args: list) -> None:
    result = tools.template(*args)
    assert result.returncode == 0, result.stderr


def test_grace_period_must_exceed_shutdown_grace(tools: Tools) -> None:
    result = tools.template("--set", "shutdownGrace=30", "--set", "terminationGracePeriodSeconds=30")
    assert result.returncode != 0
    assert "must exceed shutdownGrace" in result.stderr


def test_grace_period_leaves_room_for_a_send_on_the_wire(tools: Tools) -> None:
    """shutdownGrace 30 + a 20 s Discord answer + 5 s connect + 5 s preStop: 60 is not enough, 61 is."""
    tight = tools.template("--set", "shutdownGrace=30", "--set", "discordTimeout=20",
                           "--set", "terminationGracePeriodSeconds=60")
    assert tight.returncode != 0 and "discordTimeout" in tight.stderr
    enough = tools.template("--set", "shutdownGrace=30", "--set", "discordTimeout=20",
                            "--set", "terminationGracePeriodSeconds=61")
    assert enough.returncode == 0, enough.stderr
    default = tools.template()
    assert "terminationGracePeriodSeconds: 70" in default.stdout
    assert 'RELAY_DISCORD_TIMEOUT: "20"' in default.stdout


def test_database_url_with_existing_secret_fails(tools: Tools) -> None:
    result = tools.template("--set", "existingSecret=relay-env", "--set", f"database.url={PG_URL}")
    assert result.returncode != 0
    assert "put RELAY_DATABASE_URL into the existing Secret" in result.stderr


# --- what the Deployments look like ------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "multi"])
def test_deployments_probes_and_security(which: str, default_docs: list[dict], multi_docs: list[dict]) -> None:
    docs = default_docs if which == "default" else multi_docs
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == (1 if which == "default" else 2)
    shutdown_grace = float(of_kind(docs, "ConfigMap")[0]["data"]["RELAY_SHUTDOWN_GRACE"])
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["terminationGracePeriodSeconds"] > shutdown_grace
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert "/data" in mounts
        assert container["resources"]["requests"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secret"} <= set(annotations)

    api = named(docs, "Deployment", "relay-result-relay")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert container["ports"][0]["containerPort"] == 8000
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_default_is_one_sqlite_pod_on_a_volume(default_docs: list[dict]) -> None:
    (deployment,) = of_kind(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["RELAY_RUN_WORKERS"] == "true"
    config = of_kind(default_docs, "ConfigMap")[0]["data"]
    assert config["RELAY_DATABASE_URL"] == "sqlite:////data/relay.db"
    (pvc,) = of_kind(default_docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert not of_kind(default_docs, "Job"), "on SQLite `relay serve` migrates; no hook Job"
    assert not of_kind(default_docs, "HorizontalPodAutoscaler")
    assert not of_kind(default_docs, "Ingress")
    assert not of_kind(default_docs, "ServiceMonitor")


def test_split_mode(multi_docs: list[dict]) -> None:
    api = named(multi_docs, "Deployment", "relay-result-relay")
    worker = named(multi_docs, "Deployment", "relay-result-relay-worker")
    (api_container,) = api["spec"]["template"]["spec"]["containers"]
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    assert env_of(api_container)["RELAY_RUN_WORKERS"] == "false"
    assert worker_container["args"] == ["worker"]
    assert "replicas" not in api["spec"], "the HPA owns the replica count"
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(multi_docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"relay-result-relay", "relay-result-relay-worker"}
    assert hpas["relay-result-relay"]["apiVersion"] == "autoscaling/v2"
    assert hpas["relay-result-relay"]["spec"]["minReplicas"] == 3
    pdbs = {p["metadata"]["name"]: p["spec"] for p in of_kind(multi_docs, "PodDisruptionBudget")}
    assert pdbs["relay-result-relay"]["minAvailable"] == 2
    assert pdbs["relay-result-relay-worker"]["maxUnavailable"] == 1
    (ingress,) = of_kind(multi_docs, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] == "relay-tls"
    assert not of_kind(multi_docs, "PersistentVolumeClaim")


def test_settings_render_without_exponents(multi_docs: list[dict]) -> None:
    config = of_kind(multi_docs, "ConfigMap")[0]["data"]
    assert config["RELAY_MAX_RESULT_BYTES"] == "67108864"
    assert config["RELAY_RETRY_SCHEDULE"] == "5,30,120,600,1800,3600,7200,14400"
    assert config["RELAY_RETRY_JITTER"] == "0.2"
    assert "RELAY_DATABASE_URL" not in config, "a PostgreSQL URL holds a password: Secret only"


def test_secret_holds_the_secret_settings(multi_docs: list[dict]) -> None:
    (secret,) = [s for s in of_kind(multi_docs, "Secret") if "annotations" not in s["metadata"]]
    assert set(secret["data"]) == {
        "RELAY_DATABASE_URL",
        "RELAY_DISCORD_BOT_TOKEN",
        "RELAY_API_KEYS",
        "RELAY_ADMIN_TOKEN",
        "RELAY_SECRET_KEY",
        "RELAY_METRICS_TOKEN",
    }


# --- the migration hook -----------------------------------------------------------------


def test_migration_job_is_a_pre_install_hook(multi_docs: list[dict]) -> None:
    job = named(multi_docs, "Job", "relay-result-relay-migrate")
    hook_secret = named(multi_docs, "Secret", "relay-result-relay-migrate")
    for resource in (job, hook_secret):
        annotations = resource["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    ), "the Secret the Job reads must be created first"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert container["envFrom"] == [{"secretRef": {"name": "relay-result-relay-migrate"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["restartPolicy"] == "Never"
    assert "serviceAccountName" not in pod, "the chart's ServiceAccount does not exist yet at pre-install"


def test_migrations_can_be_turned_off(tools: Tools) -> None:
    docs = tools.render("-f", MULTI, "--set", "migrations.enabled=false")
    assert not of_kind(docs, "Job")
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"].endswith("-migrate")]


# --- existingSecret -----------------------------------------------------------------------


def test_existing_secret_is_respected(tools: Tools) -> None:
    docs = tools.render(
        "-f",
        MULTI,
        "--set",
        "existingSecret=relay-env",
        "--set",
        "database.url=",
        "--set",
        "database.external=true",
    )
    assert not of_kind(docs, "Secret"), "no Secret of the chart's own with existingSecret"
    pods = [d["spec"]["template"]["spec"] for d in of_kind(docs, "Deployment") + of_kind(docs, "Job")]
    assert len(pods) == 3
    for pod in pods:
        (container,) = pod["containers"]
        secret_refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
        assert secret_refs == ["relay-env"]
    for deployment in of_kind(docs, "Deployment"):
        assert "checksum/secret" not in deployment["spec"]["template"]["metadata"]["annotations"]


# --- the image ----------------------------------------------------------------------------


def test_hadolint_clean(tools: Tools) -> None:
    result = tools.run(tools.hadolint, "--failure-threshold", "style", ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_essentials() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM ${PYTHON_IMAGE} AS builder" in text
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert "ARG EXTRAS=postgres" in text
    assert "USER 10001:10001" in text
    assert "RELAY_DATABASE_URL=sqlite:////data/relay.db" in text
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    runtime = text.split("AS runtime", 1)[1]
    assert "apt-get" not in runtime and "gcc" not in runtime, "no compilers in the final image"


def _packages() -> list[str]:
    """The project's top-level packages, as ``pyproject.toml`` tells setuptools to find them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [pattern.rstrip("*") for pattern in config["tool"]["setuptools"]["packages"]["find"]["include"]]


def test_dockerignore_keeps_the_build_inputs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[[i for i, line in enumerate(lines) if not line.startswith("#")][0]] == "*"
    for needed in ("pyproject.toml", "README.md", *(f"{package}/" for package in _packages())):
        assert f"!{needed}" in lines


def test_the_image_copies_every_package() -> None:
    # A package missing here builds an image whose first import fails (store/ once was).
    text = (ROOT / "Dockerfile").read_text()
    assert sorted(_packages()) == sorted(["app", "delivery", "schemas", "store", "transcription"])
    for package in _packages():
        assert f"COPY {package} ./{package}\n" in text, package


def test_check_deploy_script_passes(tools: Tools) -> None:
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent)}
    result = subprocess.run(
        [str(ROOT / "scripts" / "check-deploy.sh")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-deploy: all checks passed" in result.stdout


def test_split_workers_are_probed_on_their_health_port(tools: Tools) -> None:
    docs = tools.render("--set", "mode=split", "--set", "existingSecret=relay-env", "--set", "database.external=true")
    worker = next(d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-worker"))
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RELAY_WORKER_HEALTH_PORT"] == "8081"
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_alerts_and_channel_pacing_render(tools: Tools) -> None:
    docs = tools.render("--set", "secrets.alertWebhook=https://discord.com/api/webhooks/1/ops-token",
                        "--set", "config.channelLimit=30/60", "--set", "config.alertWindow=60",
                        "--set", "config.publicUrl=https://relay.example.com")
    (secret,) = [s for s in of_kind(docs, "Secret") if "annotations" not in s["metadata"]]
    config = of_kind(docs, "ConfigMap")[0]["data"]
    assert "RELAY_ALERT_WEBHOOK" in secret["data"] and "ops-token" not in str(config)
    assert (config["RELAY_CHANNEL_LIMIT"], config["RELAY_ALERT_WINDOW"], config["RELAY_PUBLIC_URL"]) == (
        "30/60", "60", "https://relay.example.com")
