"""Checks the Kubernetes manifests in deploy/kubernetes (a kustomize base).

- Files: every file kustomization.yaml lists under `resources` exists, and
  every other *.yaml/*.yml file of the directory is listed.
- Schema: each object (found through the kustomization) is deserialized
  into its model class of the `kubernetes` Python client (Debian's
  python3-kubernetes) with client-side validation on, so required fields
  are checked; and its dict is walked against each model's
  `attribute_map`/`openapi_types`, failing on any key the schema lacks
  (deserialization alone drops them silently) and any value of the wrong
  JSON type (an unquoted `true` where a string belongs). The apiVersion must
  serve the kind, namespaced objects are in the kustomization's namespace.
  Fields newer than the installed client (the gRPC probe) are described
  in NEWER_MODELS below and used only where the client lacks them.
- Consistency: labels; the headless Service `modelmanager` selects the
  DaemonSet's pods and its ports are the DaemonSet's `grpc` port; the
  proxy Service's targetPort and the PDB's selector match the Deployment;
  the proxy's `--manager dns:///NAME:PORT` is that Service's cluster DNS
  name and port; `--listen` ports are the containerPorts; flags are ones
  docs/operations.md documents; probes use the grpc port (manager) and
  GET /health on the http port (proxy); the ConfigMap key the DaemonSet
  mounts exists and `--config` points into the mount; POD_IP comes from
  status.podIP; GPU scheduling; grace periods cover the shutdown budgets;
  the config text parses and its models' `proxy` use ${env.POD_IP}.
- With KUBECTL set to a kubectl binary: `kubectl kustomize` renders the
  directory to exactly these objects (skipped otherwise).
- With MODELMANAGER set to the modelmanager binary: `--check` and
  `--print-config` accept the ConfigMap's config with POD_IP=10.0.0.7 and
  put that address in every model's upstream URL (skipped otherwise).

Run: /usr/bin/python3 tests/deploy/kubernetes_manifests_test.py
The directory is $MANIFESTS if set, else <repo>/deploy/kubernetes.
"""

import json
import os
import re
import subprocess
import tempfile
import unittest

import yaml
from kubernetes import client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = os.environ.get("MANIFESTS") or os.path.join(REPO, "deploy", "kubernetes")
OPERATIONS_MD = os.path.join(REPO, "docs", "operations.md")

NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
APP_NAME = "modelplane"
CLUSTER_DOMAIN = "svc.cluster.local"

# Models the installed client may be too old to have (python3-kubernetes
# 22.6 is Kubernetes 1.22; the gRPC probe is 1.24+). Each: the JSON types
# by attribute, the JSON keys by attribute, the required attributes.
NEWER_MODELS = {
    "V1GRPCAction": (
        {"port": "int", "service": "str"},
        {"port": "port", "service": "service"},
        {"port"},
    ),
}
# Fields to add to a model that lacks them: model -> {attr: (json key, type)}.
NEWER_FIELDS = {
    "V1Probe": {"grpc": ("grpc", "V1GRPCAction")},
}
# resource.Quantity is a string in the schema, but the API server takes a
# JSON number too (`cpu: 1`).
QUANTITY_FIELDS = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1EmptyDirVolumeSource", "size_limit"),
}


def model_schema(name):
    """(openapi_types, attribute_map, required) of a model, or None."""
    if name in NEWER_MODELS and not hasattr(client.models, name):
        return NEWER_MODELS[name]
    cls = getattr(client.models, name, None)
    if cls is None:
        return None
    types = dict(cls.openapi_types)
    keys = dict(cls.attribute_map)
    for attr, (key, type_name) in NEWER_FIELDS.get(name, {}).items():
        if attr not in types:
            types[attr] = type_name
            keys[attr] = key
    return types, keys, set()  # Required fields: the model's own check.


def schema_errors(value, type_name, path, quantity=False):
    """Every key the schema lacks and every value of the wrong type."""
    errors = []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        inner = type_name[5:-1]
        for i, item in enumerate(value):
            errors += schema_errors(item, inner, f"{path}[{i}]", quantity)
        return errors
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        inner = re.match(r"dict\(([^,]*), (.*)\)", type_name).group(2)
        for k, v in value.items():
            if not isinstance(k, str):
                errors.append(f"{path}: key {k!r} is not a string")
            errors += schema_errors(v, inner, f"{path}.{k}", quantity)
        return errors
    if type_name == "str":
        if quantity and isinstance(value, (int, float)) and not isinstance(value, bool):
            return []
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {type(value).__name__} {value!r}"]
        return []
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {value!r}"]
        return []
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{path}: expected a number, got {value!r}"]
        return []
    if type_name == "bool":
        if not isinstance(value, bool):
            return [f"{path}: expected true or false, got {value!r}"]
        return []
    if type_name in ("datetime", "date"):
        if not isinstance(value, str):
            return [f"{path}: expected a timestamp string, got {value!r}"]
        return []
    if type_name == "object":  # IntOrString, RawExtension: anything.
        return []
    schema = model_schema(type_name)
    if schema is None:
        return [f"{path}: unknown schema type {type_name}"]
    types, keys, required = schema
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping ({type_name}), got {type(value).__name__}"]
    by_key = {keys[attr]: attr for attr in types}
    for key, item in value.items():
        attr = by_key.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field (not in {type_name})")
            continue
        errors += schema_errors(item, types[attr], f"{path}.{key}",
                                (type_name, attr) in QUANTITY_FIELDS)
    for attr in required:
        if value.get(keys[attr]) is None:
            errors.append(f"{path}.{keys[attr]}: required by {type_name}")
    return errors


def split_api_version(api_version):
    group, _, version = api_version.rpartition("/")
    return group, version


def model_class_name(obj):
    _, version = split_api_version(obj["apiVersion"])
    return version[0].upper() + version[1:] + obj["kind"]


def api_class(api_version):
    """The client's API class for a group/version (CoreV1Api, AppsV1Api)."""
    group, version = split_api_version(api_version)
    if group == "":
        prefix = "Core"
    else:
        group = re.sub(r"\.k8s\.io$", "", group)
        prefix = "".join(p[:1].upper() + p[1:] for p in re.split(r"[.-]", group))
    return getattr(client, prefix + version[0].upper() + version[1:] + "Api", None)


def snake(kind):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def is_namespaced(obj):
    """True or False, or None when the apiVersion does not serve the kind."""
    api = api_class(obj["apiVersion"])
    if api is None:
        return None
    if hasattr(api, "create_namespaced_" + snake(obj["kind"])):
        return True
    if hasattr(api, "create_" + snake(obj["kind"])):
        return False
    return None


class _Response:
    """What ApiClient.deserialize reads: a response with .data."""

    def __init__(self, obj):
        self.data = json.dumps(obj)


def deserialize(obj, class_name):
    configuration = client.Configuration()
    configuration.client_side_validation = True
    return client.ApiClient(configuration).deserialize(_Response(obj), class_name)


def load():
    """(kustomization, [(file, object)]) of the manifests directory."""
    with open(os.path.join(MANIFESTS, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    objects = []
    for name in kustomization.get("resources") or []:
        with open(os.path.join(MANIFESTS, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    objects.append((name, doc))
    return kustomization, objects


def parse_flags(argv):
    """--name value / --name=value / --switch -> {name: [values]}."""
    flags = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("--"):
            raise AssertionError(f"unexpected argument {word!r} in {argv}")
        name = word[2:]
        if "=" in name:
            name, value = name.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 1
        else:
            value = True
        flags.setdefault(name.replace("_", "-"), []).append(value)
        i += 1
    return flags


def documented_flags(binary):
    """The flags in docs/operations.md's '## <binary> flags' table."""
    with open(OPERATIONS_MD) as f:
        text = f.read()
    m = re.search(rf"^## {binary} flags\n(.*?)(?=^## )", text, re.S | re.M)
    if m is None:
        raise AssertionError(f"no '## {binary} flags' section in {OPERATIONS_MD}")
    flags = set()
    for line in m.group(1).splitlines():
        if line.startswith("| `--"):
            flags.update(re.findall(r"`--([a-z0-9-]+)", line.split("|")[1]))
    return flags


def expand_macros(text, macros):
    for _ in range(10):
        for name, value in macros.items():
            text = text.replace("${" + name + "}", str(value))
    return text


class ManifestsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.kustomization, cls.objects = load()

    # Helpers.

    def find(self, kind, name=None, component=None):
        found = [
            o for _, o in self.objects
            if o.get("kind") == kind
            and (name is None or o.get("metadata", {}).get("name") == name)
            and (component is None
                 or o.get("metadata", {}).get("labels", {}).get(COMPONENT_LABEL) == component)
        ]
        self.assertEqual(len(found), 1, f"expected one {kind} {name or component or ''}, found {len(found)}")
        return found[0]

    def daemonset(self):
        return self.find("DaemonSet", "modelmanager")

    def deployment(self):
        return self.find("Deployment", "modelproxy")

    def manager_service(self):
        return self.find("Service", "modelmanager")

    def proxy_service(self):
        return self.find("Service", "modelproxy")

    def configmap(self):
        return self.find("ConfigMap", component="modelmanager")

    def container(self, workload, name):
        containers = workload["spec"]["template"]["spec"]["containers"]
        found = [c for c in containers if c["name"] == name]
        self.assertEqual(len(found), 1, f"no container {name}")
        return found[0]

    def manager_container(self):
        return self.container(self.daemonset(), "modelmanager")

    def proxy_container(self):
        return self.container(self.deployment(), "modelproxy")

    def container_flags(self, container):
        return parse_flags((container.get("command") or [])[1:] + (container.get("args") or []))

    def container_port(self, container, name):
        ports = [p for p in container.get("ports", []) if p.get("name") == name]
        self.assertEqual(len(ports), 1, f"container {container['name']} has no port named {name}")
        return ports[0]["containerPort"]

    def namespace(self):
        return self.kustomization.get("namespace") or self.daemonset()["metadata"]["namespace"]

    def assert_selects(self, selector, workload, what):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selector, f"{what}: empty selector")
        for k, v in selector.items():
            self.assertEqual(labels.get(k), v, f"{what}: selector {k}={v} does not match the pods of "
                                               f"{workload['kind']} {workload['metadata']['name']}")

    def assert_not_selects(self, selector, workload, what):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        self.assertFalse(all(labels.get(k) == v for k, v in selector.items()),
                         f"{what}: selector also matches the pods of {workload['kind']} "
                         f"{workload['metadata']['name']}")

    def flag(self, flags, name, default=None):
        values = flags.get(name)
        if values is None:
            return default
        self.assertEqual(len(values), 1, f"--{name} given {len(values)} times")
        return values[0]

    # Files.

    def test_kustomization_lists_every_file(self):
        self.assertEqual(self.kustomization.get("apiVersion"), "kustomize.config.k8s.io/v1beta1")
        self.assertEqual(self.kustomization.get("kind"), "Kustomization")
        resources = self.kustomization.get("resources") or []
        self.assertTrue(resources, "kustomization.yaml lists no resources")
        self.assertEqual(len(resources), len(set(resources)), "a resource is listed twice")
        for name in resources:
            self.assertTrue(os.path.isfile(os.path.join(MANIFESTS, name)), f"{name} is listed but missing")
        on_disk = {n for n in os.listdir(MANIFESTS)
                   if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml"}
        self.assertEqual(sorted(on_disk - set(resources)), [], "manifest files kustomization.yaml does not list")
        for name, obj in self.objects:
            self.assertIsInstance(obj, dict, f"{name}: a document that is not a mapping")

    def test_expected_objects(self):
        seen = {}
        for name, obj in self.objects:
            key = (obj.get("apiVersion"), obj.get("kind"), obj.get("metadata", {}).get("name"))
            self.assertNotIn(key, seen, f"{name}: {key} also in {seen.get(key)}")
            seen[key] = name
        self.assertEqual(sorted(seen), sorted([
            ("apps/v1", "DaemonSet", "modelmanager"),
            ("apps/v1", "Deployment", "modelproxy"),
            ("policy/v1", "PodDisruptionBudget", "modelproxy"),
            ("v1", "ConfigMap", self.configmap()["metadata"]["name"]),
            ("v1", "Namespace", "modelplane"),
            ("v1", "Service", "modelmanager"),
            ("v1", "Service", "modelproxy"),
        ]))

    # Schema.

    def test_objects_match_schema(self):
        for name, obj in self.objects:
            what = f"{name}: {obj.get('kind')} {obj.get('metadata', {}).get('name')}"
            with self.subTest(what):
                self.assertIn("apiVersion", obj, what)
                self.assertIn("kind", obj, what)
                class_name = model_class_name(obj)
                self.assertIsNotNone(getattr(client.models, class_name, None),
                                     f"{what}: no model {class_name} for {obj['apiVersion']}")
                self.assertIsNotNone(is_namespaced(obj),
                                     f"{what}: {obj['apiVersion']} does not serve kind {obj['kind']}")
                try:
                    model = deserialize(obj, class_name)
                except (ValueError, TypeError) as e:
                    self.fail(f"{what}: invalid {class_name}: {e}")
                self.assertEqual(model.kind, obj["kind"])
                self.assertEqual(schema_errors(obj, class_name, class_name), [], what)

    def test_schema_check_catches_mistakes(self):
        # The checker itself: an unknown field, a wrong type, a missing
        # required field, each named by its path.
        ds = json.loads(json.dumps(self.daemonset()))
        c = ds["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["grpc"]["prot"] = 1
        c["livenessProbe"]["grpc"] = {"service": ""}
        ds["spec"]["template"]["spec"]["nodeSelector"] = {"gpu": True}
        ds["spec"]["template"]["spec"]["hostnetwork"] = False
        errors = schema_errors(ds, "V1DaemonSet", "V1DaemonSet")
        joined = "\n".join(errors)
        self.assertIn("readinessProbe.grpc.prot: unknown field", joined)
        self.assertIn("spec.nodeSelector.gpu: expected a string", joined)
        self.assertIn("spec.template.spec.hostnetwork: unknown field", joined)
        if not hasattr(client.models, "V1GRPCAction"):
            self.assertIn("livenessProbe.grpc.port: required", joined)
        del c["name"]
        with self.assertRaises(ValueError):
            deserialize(ds, "V1DaemonSet")

    def test_namespaces(self):
        namespace = self.namespace()
        self.find("Namespace", namespace)
        for name, obj in self.objects:
            meta = obj.get("metadata", {})
            if is_namespaced(obj):
                self.assertEqual(meta.get("namespace"), namespace,
                                 f"{name}: {obj['kind']} {meta.get('name')} not in namespace {namespace}")
            else:
                self.assertNotIn("namespace", meta, f"{name}: cluster-scoped {obj['kind']} has a namespace")

    def test_labels(self):
        for name, obj in self.objects:
            labels = obj.get("metadata", {}).get("labels", {})
            self.assertEqual(labels.get(NAME_LABEL), APP_NAME, f"{name}: {NAME_LABEL}")
            if obj["kind"] != "Namespace":
                self.assertIn(labels.get(COMPONENT_LABEL), ("modelmanager", "modelproxy"),
                              f"{name}: {COMPONENT_LABEL}")
        for workload in (self.daemonset(), self.deployment()):
            component = workload["metadata"]["name"]
            self.assertEqual(workload["metadata"]["labels"].get(COMPONENT_LABEL), component)
            pod_labels = workload["spec"]["template"]["metadata"]["labels"]
            self.assertEqual(pod_labels.get(NAME_LABEL), APP_NAME)
            self.assertEqual(pod_labels.get(COMPONENT_LABEL), component)
            self.assertEqual(set(workload["spec"]["selector"]), {"matchLabels"})
            self.assert_selects(workload["spec"]["selector"]["matchLabels"], workload,
                                f"{workload['kind']} selector")
        for service in (self.manager_service(), self.proxy_service()):
            self.assertEqual(service["metadata"]["labels"].get(COMPONENT_LABEL), service["metadata"]["name"])

    # The manager.

    def test_manager_service_is_headless_and_selects_the_daemonset(self):
        service = self.manager_service()
        spec = service["spec"]
        self.assertEqual(spec.get("clusterIP"), "None")
        self.assertIs(spec.get("publishNotReadyAddresses"), False)
        self.assert_selects(spec["selector"], self.daemonset(), "Service modelmanager")
        self.assert_not_selects(spec["selector"], self.deployment(), "Service modelmanager")
        container = self.manager_container()
        self.assertTrue(spec.get("ports"))
        for port in spec["ports"]:
            number = self.container_port(container, port["name"])
            self.assertEqual(port["port"], number, f"Service port {port['name']}")
            self.assertIn(port.get("targetPort", number), (port["name"], number))
        self.assertEqual([p["port"] for p in spec["ports"] if p["name"] == "grpc"], [50051])

    def test_manager_flags(self):
        container = self.manager_container()
        self.assertEqual(os.path.basename(container["command"][0]), "modelmanager")
        flags = self.container_flags(container)
        unknown = set(flags) - documented_flags("modelmanager")
        self.assertEqual(unknown, set(), "flags docs/operations.md does not document")
        self.assertNotIn("check", flags)
        self.assertNotIn("print-config", flags)
        listen = self.flag(flags, "listen")
        self.assertEqual(listen, f"0.0.0.0:{self.container_port(container, 'grpc')}")

    def test_manager_config_mount(self):
        ds = self.daemonset()
        container = self.manager_container()
        flags = self.container_flags(container)
        config_path = self.flag(flags, "config")
        self.assertTrue(config_path, "--config")
        cm = self.configmap()
        volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"].get("volumes", [])}
        mounts = [m for m in container.get("volumeMounts", [])
                  if "configMap" in volumes.get(m["name"], {})
                  and volumes[m["name"]]["configMap"]["name"] == cm["metadata"]["name"]]
        self.assertEqual(len(mounts), 1, f"one mount of ConfigMap {cm['metadata']['name']}")
        mount = mounts[0]
        self.assertTrue(mount.get("readOnly"), "the config mount is read-only")
        source = volumes[mount["name"]]["configMap"]
        if "watch-config" in flags:
            self.assertNotIn("subPath", mount, "a subPath mount never sees ConfigMap updates (--watch-config)")
        mount_path = mount["mountPath"].rstrip("/")
        self.assertTrue(config_path.startswith(mount_path + "/"),
                        f"--config {config_path} is not under the mount {mount_path}")
        relative = config_path[len(mount_path) + 1:]
        if "subPath" in mount:
            relative = os.path.join(mount["subPath"], relative)
        items = source.get("items")
        if items:
            keys = [i["key"] for i in items if i["path"] == relative]
            self.assertEqual(len(keys), 1, f"no item of the ConfigMap volume has path {relative}")
            key = keys[0]
        else:
            key = relative
        self.assertIn(key, cm.get("data", {}), f"the ConfigMap has no key {key}")
        for item in items or []:
            self.assertIn(item["key"], cm.get("data", {}), f"the ConfigMap has no key {item['key']}")

    def test_manager_probes_use_grpc_port(self):
        container = self.manager_container()
        port = self.container_port(container, "grpc")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            self.assertIsNotNone(probe, probe_name)
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
            self.assertEqual(handlers, ["grpc"], f"{probe_name}: one grpc handler")
            self.assertEqual(probe["grpc"].get("port"), port, f"{probe_name}: the grpc containerPort")
            # Service "" is the manager itself (server/serve.cc).
            self.assertEqual(probe["grpc"].get("service", ""), "", probe_name)

    def test_manager_pod_ip_and_network(self):
        spec = self.daemonset()["spec"]["template"]["spec"]
        self.assertIs(spec.get("hostNetwork", False), False)
        env = {e["name"]: e for e in self.manager_container().get("env", [])}
        self.assertIn("POD_IP", env)
        self.assertNotIn("value", env["POD_IP"])
        self.assertEqual(env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP")

    def test_manager_runs_on_gpu_nodes(self):
        spec = self.daemonset()["spec"]["template"]["spec"]
        selector = spec.get("nodeSelector", {})
        expressions = [
            e for term in (spec.get("affinity", {}).get("nodeAffinity", {})
                           .get("requiredDuringSchedulingIgnoredDuringExecution", {})
                           .get("nodeSelectorTerms", []))
            for e in term.get("matchExpressions", [])
        ]
        gpu_label = any(k.startswith("nvidia.com/gpu") for k in selector) or any(
            e["key"].startswith("nvidia.com/gpu") and e["operator"] in ("In", "Exists") for e in expressions)
        self.assertTrue(gpu_label, "no nodeSelector or node affinity on an nvidia.com/gpu label")
        self.assertTrue(any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])),
                        "no toleration for nvidia.com/gpu")
        limits = self.manager_container().get("resources", {}).get("limits", {})
        self.assertIn("nvidia.com/gpu", limits)
        self.assertGreaterEqual(int(limits["nvidia.com/gpu"]), 1)

    def test_manager_grace_period_covers_shutdown(self):
        spec = self.daemonset()["spec"]["template"]["spec"]
        flags = self.container_flags(self.manager_container())
        budget = int(self.flag(flags, "shutdown-seconds", "30"))
        grace = spec.get("terminationGracePeriodSeconds", 30)
        self.assertGreater(grace, budget, "terminationGracePeriodSeconds <= --shutdown-seconds")
        config = yaml.safe_load(self.configmap()["data"]["config.yaml"])
        unload = max([config.get("unloadTimeout") or 10] +
                     [m.get("unloadTimeout") or 0 for m in config["models"].values()])
        self.assertGreaterEqual(budget, unload, "--shutdown-seconds below the config's unloadTimeout")

    def test_config_text(self):
        data = self.configmap()["data"]["config.yaml"]
        config = yaml.safe_load(data)
        self.assertIsInstance(config, dict)
        models = config.get("models")
        self.assertIsInstance(models, dict)
        self.assertGreaterEqual(len(models), 2)
        macros = {k: v for k, v in (config.get("macros") or {}).items()}
        for model_id, model in models.items():
            with self.subTest(model_id):
                proxy = model.get("proxy", "")
                self.assertIn("${env.POD_IP}", proxy, f"models.{model_id}.proxy")
                self.assertRegex(proxy, r"^http://\$\{env\.POD_IP\}:", f"models.{model_id}.proxy")
                cmd = expand_macros(model["cmd"], {**macros, **(model.get("macros") or {})})
                self.assertRegex(cmd, r"--host\s+(0\.0\.0\.0|\$\{env\.POD_IP\})\b",
                                 f"models.{model_id}.cmd: must listen beyond loopback")
                self.assertIn("${PORT}", cmd, f"models.{model_id}.cmd")
                if "${PORT}" not in proxy:
                    self.fail(f"models.{model_id}.proxy: no ${{PORT}}")

    # The proxy.

    def test_proxy_manager_flag_names_the_headless_service(self):
        flags = self.container_flags(self.proxy_container())
        managers = flags.get("manager", [])
        self.assertEqual(len(managers), 1, "one --manager")
        m = re.fullmatch(r"dns://[^/]*/([^:/]+):(\d+)", managers[0])
        self.assertIsNotNone(m, f"--manager {managers[0]} is not dns:///NAME:PORT")
        service = self.manager_service()
        expected = f"{service['metadata']['name']}.{service['metadata']['namespace']}.{CLUSTER_DOMAIN}"
        self.assertEqual(m.group(1), expected)
        self.assertEqual(m.group(1), f"modelmanager.{self.namespace()}.{CLUSTER_DOMAIN}")
        self.assertIn(int(m.group(2)), [p["port"] for p in service["spec"]["ports"]])
        self.assertEqual(int(m.group(2)),
                         [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"][0])
        self.assertGreater(int(self.flag(flags, "resolve-interval-ms", "5000")), 0)

    def test_proxy_flags(self):
        container = self.proxy_container()
        self.assertEqual(os.path.basename(container["command"][0]), "modelproxy")
        flags = self.container_flags(container)
        unknown = set(flags) - documented_flags("modelproxy")
        self.assertEqual(unknown, set(), "flags docs/operations.md does not document")
        self.assertEqual(self.flag(flags, "listen"), f"0.0.0.0:{self.container_port(container, 'http')}")

    def test_proxy_service_targets_http(self):
        service = self.proxy_service()
        spec = service["spec"]
        self.assertEqual(spec.get("type", "ClusterIP"), "ClusterIP")
        self.assertNotEqual(spec.get("clusterIP"), "None")
        self.assert_selects(spec["selector"], self.deployment(), "Service modelproxy")
        self.assert_not_selects(spec["selector"], self.daemonset(), "Service modelproxy")
        container = self.proxy_container()
        self.assertEqual(len(spec["ports"]), 1)
        port = spec["ports"][0]
        self.assertEqual(port["port"], 80)
        self.assertEqual(port["targetPort"], "http")
        self.container_port(container, port["targetPort"])

    def test_proxy_probes_get_health(self):
        container = self.proxy_container()
        number = self.container_port(container, "http")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            self.assertIsNotNone(probe, probe_name)
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
            self.assertEqual(handlers, ["httpGet"], f"{probe_name}: one httpGet handler")
            self.assertEqual(probe["httpGet"]["path"], "/health", probe_name)
            self.assertIn(probe["httpGet"]["port"], ("http", number), probe_name)
            self.assertIn(probe["httpGet"].get("scheme", "HTTP"), ("HTTP",), probe_name)

    def test_proxy_deployment(self):
        deployment = self.deployment()
        self.assertEqual(deployment["spec"].get("replicas"), 2)
        container = self.proxy_container()
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                self.assertIn(resource, resources.get(kind, {}), f"resources.{kind}.{resource}")
        flags = self.container_flags(container)
        drain = int(self.flag(flags, "drain-seconds", "30"))
        pre_stop = 0
        command = (container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command") or [])
        if command[:1] == ["sleep"]:
            pre_stop = int(command[1])
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        self.assertGreater(grace, drain + pre_stop,
                           "terminationGracePeriodSeconds <= preStop pause + --drain-seconds")

    def test_pdb_selects_the_proxy(self):
        pdb = self.find("PodDisruptionBudget", "modelproxy")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        spec = pdb["spec"]
        self.assertEqual(spec.get("minAvailable"), 1)
        self.assertEqual(set(spec["selector"]), {"matchLabels"})
        self.assert_selects(spec["selector"]["matchLabels"], self.deployment(), "PodDisruptionBudget")
        self.assert_not_selects(spec["selector"]["matchLabels"], self.daemonset(), "PodDisruptionBudget")
        self.assertLess(spec["minAvailable"], self.deployment()["spec"]["replicas"],
                        "minAvailable >= replicas blocks every eviction")

    @unittest.skipUnless(os.environ.get("KUBECTL"), "KUBECTL is not set")
    def test_kustomize_renders_the_same_objects(self):
        rendered = subprocess.run([os.environ["KUBECTL"], "kustomize", MANIFESTS],
                                  capture_output=True, text=True, timeout=120)
        self.assertEqual(rendered.returncode, 0, rendered.stderr)
        docs = [d for d in yaml.safe_load_all(rendered.stdout) if d is not None]
        self.assertEqual(sorted(json.dumps(d, sort_keys=True) for d in docs),
                         sorted(json.dumps(o, sort_keys=True) for _, o in self.objects))

    # The real config loader.

    @unittest.skipUnless(os.environ.get("MODELMANAGER"), "MODELMANAGER is not set")
    def test_modelmanager_accepts_the_config(self):
        binary = os.environ["MODELMANAGER"]
        self.assertTrue(os.access(binary, os.X_OK), f"{binary} is not executable")
        config = yaml.safe_load(self.configmap()["data"]["config.yaml"])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "config.yaml")
            with open(path, "w") as f:
                f.write(self.configmap()["data"]["config.yaml"])
            env = dict(os.environ, POD_IP="10.0.0.7")
            check = subprocess.run([binary, "--config", path, "--check"], env=env,
                                   capture_output=True, text=True, timeout=60)
            self.assertEqual(check.returncode, 0, check.stderr)
            upstreams = dict(re.findall(r"^(\S+)\tgroup=\S*\tupstream=(\S+)\t", check.stdout, re.M))
            self.assertEqual(sorted(upstreams), sorted(config["models"]), check.stdout)
            for model_id, url in upstreams.items():
                self.assertRegex(url, r"^http://10\.0\.0\.7:\d+$", model_id)
            printed = subprocess.run([binary, "--config", path, "--print-config"], env=env,
                                     capture_output=True, text=True, timeout=60)
            self.assertEqual(printed.returncode, 0, printed.stderr)
            resolved = json.loads(printed.stdout)
            for model in resolved["models"]:
                self.assertEqual(model["proxy"], f"http://10.0.0.7:{model['port']}", model["id"])
                self.assertIn("0.0.0.0", model["cmd"], model["id"])
                self.assertIn(str(model["port"]), model["cmd"], model["id"])
            # The macro is really used: without POD_IP the config is invalid.
            env.pop("POD_IP")
            unset = subprocess.run([binary, "--config", path, "--check"], env=env,
                                   capture_output=True, text=True, timeout=60)
            self.assertEqual(unset.returncode, 2, unset.stdout)
            self.assertIn("POD_IP", unset.stderr)


if __name__ == "__main__":
    try:
        from tools.testing import junit  # Under Bazel: XML for .ci/run.
        junit.main()
    except ImportError:  # Run by hand: /usr/bin/python3 tests/deploy/...
        unittest.main()
