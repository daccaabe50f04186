from pathlib import Path

import pytest

from promo.config import load_config
from promo.errors import ConfigError, InputError

VALID = """\
app: hello
app_repo: {url: remotes/hello.git}
gitops: {url: "file:///srv/gitops.git", branch: main}
chart: {path: charts/hello, repository: 127.0.0.1:5000/charts}
image: {repository: 127.0.0.1:5000/hello}
environments:
  - {name: dev, clusters: [preprod]}
  - {name: test, clusters: [preprod]}
  - {name: stage, clusters: [preprod, preprod-eu], approvers: [alice]}
  - {name: prod, clusters: [prod], approvers: [alice, bob]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promo.yaml"
    path.write_text(text)
    return path


def test_valid_config_loads_and_resolves_relative_remotes(tmp_path):
    config = load_config(write(tmp_path, VALID))
    assert config.app == "hello"
    assert config.app_repo.url == (tmp_path / "remotes/hello.git").resolve().as_uri()
    assert config.gitops.url == "file:///srv/gitops.git"
    assert config.environment_names == ["dev", "test", "stage", "prod"]
    assert config.source_of("stage").name == "test"
    assert config.environment("prod").approvers == ["alice", "bob"]


def test_promo_config_env_var_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMO_CONFIG", str(write(tmp_path, VALID)))
    assert load_config().app == "hello"


def test_default_environments(tmp_path):
    text = VALID.split("environments:")[0]
    config = load_config(write(tmp_path, text))
    assert [(e.name, e.clusters) for e in config.environments] == [
        ("dev", ["preprod"]), ("test", ["preprod"]), ("stage", ["preprod"]), ("prod", ["prod"])
    ]


def test_unknown_environment_names_the_valid_ones(tmp_path):
    config = load_config(write(tmp_path, VALID))
    with pytest.raises(InputError, match="unknown environment 'qa'; use one of: dev, test, stage, prod"):
        config.environment("qa")
    with pytest.raises(InputError, match="first environment"):
        config.source_of("dev")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "not found"),
        ("app: [unclosed", "not valid YAML at line 1"),
        ("- a\n- b\n", "must be a mapping"),
        (VALID.replace("app: hello", "app: ../x"), "app: app '../x' is not a DNS label"),
        (VALID.replace("app: hello", "app: a/b"), "not a DNS label"),
        (VALID.replace("app: hello", "app: my app"), "not a DNS label"),
        (VALID.replace("{name: test,", "{name: 'prod;rm',"), "environment 'prod;rm' is not a DNS label"),
        (VALID.replace("{name: test,", "{name: dev,"), "environment names must be unique, repeated: dev"),
        (VALID.replace("app: hello\n", ""), "app: Field required"),
        (VALID + "colour: blue\n", "colour: unknown setting; the settings here are: "),
        (VALID.replace("environments:", "enviroments:"), "enviroments: unknown setting; did you mean 'environments'?"),
        (VALID.replace("{name: test,", "{nmae: test,"), "environments.1.nmae: unknown setting (and 1 more); did you mean 'name'?"),
        (VALID.replace("image: {repository: 127.0.0.1:5000/hello}", "image: {repository: x, builder: podman}"), "image.builder"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, text, expected):
    path = tmp_path / "promo.yaml" if text is None else write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert "; " in message  # cause; fix


def test_soak_and_verify_durations_read_as_seconds():
    from promo.config import EnvironmentSettings

    env = EnvironmentSettings(
        name="test", clusters=["a"], soak="30m", verify={"http": {"url": "http://x/{app}"}, "timeout": "2h"}
    )
    assert (env.soak, env.verify.timeout, env.verify.healthy_for) == (1800, 7200, 5)
    for wrong in ("30 minutes", "-5", True):
        with pytest.raises(ValueError):
            EnvironmentSettings(name="test", clusters=["a"], soak=wrong)
    with pytest.raises(ValueError, match="argocd, http or both"):
        EnvironmentSettings(name="test", clusters=["a"], verify={})


def test_the_stored_document_reads_back_as_the_same_config(tmp_path):
    """What `promo setup` stores on the server: what promo.yaml set (relative remotes made absolute, durations in
    seconds), not the defaults, and validated back into an equal config."""
    from promo.config import config_document, validate_config

    text = VALID.replace("approvers: [alice]}", "approvers: [alice], soak: 30m}")
    config = load_config(write(tmp_path, text))
    document = config_document(config)
    assert document["app_repo"] == {"url": (tmp_path / "remotes/hello.git").resolve().as_uri()}
    assert document["environments"][2]["soak"] == 1800
    assert "gate" not in document and "registry" not in document  # defaults stay promo's, not frozen at setup
    assert validate_config(document, "the stored config") == config


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["a"], "the stored config must be a mapping of settings, not list"),
        ({"app": "hello"}, "the stored config: app_repo: Field required (and 3 more)"),
    ],
)
def test_a_bad_stored_document_is_one_clear_line(data, expected):
    from promo.config import validate_config

    with pytest.raises(ConfigError) as caught:
        validate_config(data, "the stored config")
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_pull_request_writes_default_to_a_review_gate(tmp_path):
    text = VALID.replace("approvers: [alice]}", "approvers: [alice], write: pull-request, merge_method: squash}")
    config = load_config(write(tmp_path, text + "forge: {kind: github, repository: acme/gitops}\n"))
    stage, prod = config.environment("stage"), config.environment("prod")
    assert (stage.write, stage.gate_kind, stage.merge_method) == ("pull-request", "pull-request", "squash")
    assert (prod.write, prod.gate_kind, prod.merge_method) == ("push", "prefect", "merge")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("approval: pull-request", "approval: pull-request needs write: pull-request"),
        ("write: pull-request", r"write: pull-request \(stage\) needs forge.kind: github"),
        ("merge_method: rebase", "environments.2.merge_method: Input should be 'merge' or 'squash'"),
    ],
)
def test_pull_request_settings_are_checked(tmp_path, settings, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, VALID.replace("approvers: [alice]}", f"approvers: [alice], {settings}}}")))


def test_approval_by_prefect_form_keeps_the_pull_request_for_branch_protection(tmp_path):
    text = VALID.replace("approvers: [alice]}", "approvers: [alice], write: pull-request, approval: prefect}")
    config = load_config(write(tmp_path, text + "forge: {kind: github, repository: acme/gitops}\n"))
    assert config.environment("stage").gate_kind == "prefect"
