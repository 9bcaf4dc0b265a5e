"""Operator configuration from the environment."""

from __future__ import annotations

import logging

import pytest

from stockade.config import ConfigError, OperatorConfig, load_config, matches


def test_defaults() -> None:
    config = load_config({})
    assert config.default_runtime_class == "gvisor"
    assert config.allowed_runtime_classes == ("gvisor", "kata", "kata-*")
    assert config.allowed_pod_label_keys == ("user.stockade.dev/*",)
    assert config.allowed_toleration_keys == ()
    assert config.allowed_priority_classes == ()
    assert config.operator_namespace is None
    assert config.default_requests["cpu"] == "250m"
    assert config.log_level == "info"
    assert (config.tmp_size_limit, config.home_size_limit) == ("1Gi", "1Gi")
    assert config.egress_dns_preset == "kube-dns"
    assert config.egress_dns_namespace_labels is None
    assert config.egress_dns_pod_labels is None
    assert config.egress_dns_cidrs == ()
    assert config.egress_dns_ports is None


@pytest.mark.parametrize("name", ["gvisor", "kata", "kata-qemu", "kata-clh", "kata-qemu-tdx"])
def test_sandboxes_are_allowed_by_default(name: str) -> None:
    assert load_config({}).runtime_class_allowed(name)


@pytest.mark.parametrize("name", ["runc", "crun", "", "katalyst", "gvisor2"])
def test_running_without_a_sandbox_is_refused_by_default(name: str) -> None:
    assert not load_config({}).runtime_class_allowed(name)


def test_star_allows_any_runtime_class() -> None:
    config = load_config({"STOCKADE_ALLOWED_RUNTIME_CLASSES": "*"})
    assert config.runtime_class_allowed("runc")


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("kata-qemu", ("kata-*",), True),
        ("kata", ("kata-*",), False),
        ("anything", ("*",), True),
        ("", ("*",), True),
        ("", ("a",), False),
        ("team", ("team", "x/*"), True),
        ("x/y", ("team", "x/*"), True),
        ("xy", ("x/*",), False),
        ("a", (), False),
    ],
)
def test_matches(name: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert matches(name, patterns) is expected


def test_allow_lists_from_the_environment() -> None:
    config = load_config(
        {
            "STOCKADE_ALLOWED_POD_LABEL_KEYS": "team, example.com/*",
            "STOCKADE_ALLOWED_TOLERATION_KEYS": "sandbox.example.com/*",
            "STOCKADE_ALLOWED_PRIORITY_CLASSES": "agents-low,agents-high",
        }
    )
    assert config.allowed_pod_label_keys == ("team", "example.com/*")
    assert config.allowed_toleration_keys == ("sandbox.example.com/*",)
    assert config.allowed_priority_classes == ("agents-low", "agents-high")


def test_an_empty_allow_list_variable_allows_nothing() -> None:
    # The chart always writes the variables: [] must mean none, not the default.
    config = load_config({"STOCKADE_ALLOWED_POD_LABEL_KEYS": ""})
    assert config.allowed_pod_label_keys == ()
    assert load_config({"STOCKADE_NAMESPACES": ""}).namespaces == ()


def test_operator_namespace_from_its_variable_or_the_downward_api() -> None:
    assert load_config({"POD_NAMESPACE": "ops"}).operator_namespace == "ops"
    both = {"POD_NAMESPACE": "ops", "STOCKADE_OPERATOR_NAMESPACE": "stockade-system"}
    assert load_config(both).operator_namespace == "stockade-system"
    refused = load_config(both).refused_namespaces()
    assert refused == {"kube-system", "kube-public", "kube-node-lease", "stockade-system"}
    assert load_config({}).refused_namespaces() == {
        "kube-system",
        "kube-public",
        "kube-node-lease",
    }


def test_environment_values() -> None:
    config = load_config(
        {
            "STOCKADE_ALLOWED_RUNTIME_CLASSES": "gvisor, kata",
            "STOCKADE_DEFAULT_REQUESTS": "cpu=100m,memory=128Mi",
            "STOCKADE_NAMESPACES": "a,b",
            "STOCKADE_BACKOFF_BASE_SECONDS": "2",
            "STOCKADE_LOG_FORMAT": "json",
        }
    )
    assert config.allowed_runtime_classes == ("gvisor", "kata")
    assert not config.runtime_class_allowed("runc")
    assert config.default_requests == {"cpu": "100m", "memory": "128Mi"}
    assert config.namespaces == ("a", "b")
    assert config.log_format == "json"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STOCKADE_HISTORY_LIMIT": "0"}, "STOCKADE_HISTORY_LIMIT"),
        ({"STOCKADE_METRICS_PORT": "http"}, "STOCKADE_METRICS_PORT"),
        ({"STOCKADE_DEFAULT_LIMITS": "cpu"}, "STOCKADE_DEFAULT_LIMITS"),
        ({"STOCKADE_LOG_FORMAT": "xml"}, "STOCKADE_LOG_FORMAT"),
        ({"STOCKADE_ALLOWED_RUNTIME_CLASSES": ""}, "STOCKADE_ALLOWED_RUNTIME_CLASSES"),
        ({"STOCKADE_ALLOWED_RUNTIME_CLASSES": "ka*ta"}, "STOCKADE_ALLOWED_RUNTIME_CLASSES"),
        ({"STOCKADE_ALLOWED_POD_LABEL_KEYS": "*x"}, "STOCKADE_ALLOWED_POD_LABEL_KEYS"),
        ({"STOCKADE_DEFAULT_RUNTIME_CLASS": "runc"}, "STOCKADE_ALLOWED_RUNTIME_CLASSES"),
        ({"STOCKADE_LOG_LEVEL": "trace"}, "STOCKADE_LOG_LEVEL"),
        ({"STOCKADE_LOG_LEVEL": "INFO"}, "STOCKADE_LOG_LEVEL"),
        ({"STOCKADE_TMP_SIZE_LIMIT": "1 GB"}, "STOCKADE_TMP_SIZE_LIMIT"),
        ({"STOCKADE_HOME_SIZE_LIMIT": "-1Gi"}, "STOCKADE_HOME_SIZE_LIMIT"),
        ({"STOCKADE_EGRESS_DNS_PRESET": "coredns"}, "STOCKADE_EGRESS_DNS_PRESET"),
        ({"STOCKADE_EGRESS_DNS_POD_LABELS": "k8s-app"}, "STOCKADE_EGRESS_DNS_POD_LABELS"),
        ({"STOCKADE_EGRESS_DNS_CIDRS": "169.254.20.10"}, "STOCKADE_EGRESS_DNS_CIDRS"),
        ({"STOCKADE_EGRESS_DNS_CIDRS": "10.0.0.1/8"}, "STOCKADE_EGRESS_DNS_CIDRS"),
        ({"STOCKADE_EGRESS_DNS_PORTS": "dns"}, "STOCKADE_EGRESS_DNS_PORTS"),
        ({"STOCKADE_EGRESS_DNS_PORTS": "0"}, "STOCKADE_EGRESS_DNS_PORTS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(env)


def test_backoff_doubles_and_caps() -> None:
    config = OperatorConfig(backoff_base_seconds=10, backoff_max_seconds=60)
    assert [config.backoff_seconds(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_leader_election_is_off_unless_asked() -> None:
    config = load_config({})
    assert config.leader_election is False
    assert config.leader_election_lease_name == "stockade-operator"
    # controller-runtime's defaults.
    assert (
        config.leader_election_lease_duration_seconds,
        config.leader_election_renew_deadline_seconds,
        config.leader_election_retry_period_seconds,
    ) == (15, 10.0, 2.0)


def test_leader_election_settings() -> None:
    config = load_config(
        {
            "STOCKADE_LEADER_ELECTION": "true",
            "STOCKADE_LEADER_ELECTION_NAMESPACE": "stockade-system",
            "STOCKADE_LEADER_ELECTION_LEASE_NAME": "stockade",
            "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS": "30",
            "STOCKADE_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "20",
            "STOCKADE_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "4",
            "STOCKADE_POD_NAME": "stockade-5d9f-abcde",
        }
    )
    assert config.leader_election is True
    assert config.leader_election_namespace == "stockade-system"
    assert config.leader_election_lease_name == "stockade"
    assert config.leader_election_lease_duration_seconds == 30
    assert config.pod_name == "stockade-5d9f-abcde"


ELECTION = {"STOCKADE_LEADER_ELECTION": "true", "STOCKADE_LEADER_ELECTION_NAMESPACE": "ops"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STOCKADE_LEADER_ELECTION": "maybe"}, "STOCKADE_LEADER_ELECTION"),
        ({"STOCKADE_LEADER_ELECTION": "true"}, "STOCKADE_LEADER_ELECTION_NAMESPACE"),
        (
            {**ELECTION, "STOCKADE_LEADER_ELECTION_LEASE_NAME": "Not_A_Name"},
            "STOCKADE_LEADER_ELECTION_LEASE_NAME",
        ),
        (
            {**ELECTION, "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS": "1.5"},
            "STOCKADE_LEADER_ELECTION_LEASE_DURATION_SECONDS",
        ),
        # client-go's rule: lease duration > renew deadline > 1.2 x retry period.
        (
            {**ELECTION, "STOCKADE_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "15"},
            "_RENEW_DEADLINE_SECONDS",
        ),
        (
            {**ELECTION, "STOCKADE_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "9"},
            "_RETRY_PERIOD_SECONDS",
        ),
    ],
)
def test_bad_leader_election_settings(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(env)


def test_agent_pod_and_dns_settings_from_the_environment() -> None:
    config = load_config(
        {
            "STOCKADE_LOG_LEVEL": "debug",
            "STOCKADE_TMP_SIZE_LIMIT": "512Mi",
            "STOCKADE_HOME_SIZE_LIMIT": "4Gi",
            "STOCKADE_EGRESS_DNS_PRESET": "openshift",
            "STOCKADE_EGRESS_DNS_NAMESPACE_LABELS": "dns=yes, tier=infra",
            "STOCKADE_EGRESS_DNS_POD_LABELS": "app=dns",
            "STOCKADE_EGRESS_DNS_CIDRS": "169.254.20.10/32, fd00::a/128",
            "STOCKADE_EGRESS_DNS_PORTS": "53,5353",
        }
    )
    assert config.log_level == "debug"
    assert (config.tmp_size_limit, config.home_size_limit) == ("512Mi", "4Gi")
    assert config.egress_dns_preset == "openshift"
    assert config.egress_dns_namespace_labels == {"dns": "yes", "tier": "infra"}
    assert config.egress_dns_pod_labels == {"app": "dns"}
    assert config.egress_dns_cidrs == ("169.254.20.10/32", "fd00::a/128")
    assert config.egress_dns_ports == (53, 5353)


def test_empty_dns_variables_keep_the_presets() -> None:
    config = load_config(
        {"STOCKADE_EGRESS_DNS_NAMESPACE_LABELS": "", "STOCKADE_EGRESS_DNS_PORTS": ""}
    )
    assert config.egress_dns_namespace_labels is None
    assert config.egress_dns_ports is None


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
    ],
)
def test_log_level_sets_the_operators_loggers(level: str, expected: int) -> None:
    from stockade.__main__ import configure_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging(load_config({"STOCKADE_LOG_LEVEL": level}))
        for name in ("stockade", "stockade.reconcile", "stockade.decisions"):
            assert logging.getLogger(name).getEffectiveLevel() == expected
        # kopf's per-object "Handler ... invoked/succeeded" lines never: at debug the
        # decision log says what the operator saw and did instead.
        assert logging.getLogger("kopf.objects").getEffectiveLevel() == max(
            expected, logging.WARNING
        )
        assert logging.getLogger("kopf").getEffectiveLevel() == max(expected, logging.INFO)
        assert logging.getLogger("stockade").isEnabledFor(logging.DEBUG) is (level == "debug")
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("kopf").setLevel(logging.NOTSET)
        logging.getLogger("kopf.objects").setLevel(logging.NOTSET)


@pytest.mark.parametrize(("raw", "uid"), [(None, 65532), ("1000", 1000), ("platform", "platform")])
def test_agent_uid(raw: str | None, uid: int | str) -> None:
    env = {} if raw is None else {"STOCKADE_AGENT_UID": raw}
    assert load_config(env).agent_uid == uid


@pytest.mark.parametrize("raw", ["0", "-1", "root", "2147483648"])
def test_agent_uid_is_never_root_nor_nonsense(raw: str) -> None:
    with pytest.raises(ConfigError, match="STOCKADE_AGENT_UID"):
        load_config({"STOCKADE_AGENT_UID": raw})
