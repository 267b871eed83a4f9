"""The renderer: one Deployment, StatefulSet or Job per service (with its Service,
ConfigMap and claims), RBAC for Job waiters, the Secret and the kustomization."""

from __future__ import annotations

import shlex

from devstack.declare.checks import (
    HttpGet,
)
from devstack.declare.spec import Mount, Service, Stack
from devstack.k8s.hardening import (
    SECRET_FILES_DIR,
    SECRET_FILES_VOLUME,
    network_policy,
    secret_file_env,
    secret_files_volume,
    writable_dirs,
)
from devstack.k8s.model import (
    CONTROL_CHARACTER,
    JOB_TTL,
    MANAGED_BY,
    SECRET_NAME,
    SECRET_NAMES,
    SERVER_RESOURCES,
    WAITER,
    NoKubernetesEquivalent,
    Obj,
    Rendered,
    RenderOptions,
    _digest,
    _label_value,
    dns_label,
    literal,
)
from devstack.k8s.monitoring import (
    files_config_map,
    files_config_map_name,
    files_digest,
    files_volume,
    metrics_port,
    scrape_annotations,
)
from devstack.k8s.probes import Probes, _container_security, _token_volume
from devstack.k8s.secrets import Secrets, secret_forms
from devstack.k8s.yaml_out import HEADER, _dump_all


def render(stack: Stack, options: RenderOptions) -> Rendered:
    """The stack as Kubernetes manifests; NoKubernetesEquivalent names what cannot map."""
    return _Renderer(stack, options).render()


class _Renderer(Probes):
    def __init__(self, stack: Stack, options: RenderOptions) -> None:
        self.stack = stack
        self.options = options
        self.notes: list[str] = []
        self.secrets = Secrets()
        self.uses_job_waiter = False
        self.job_names: dict[str, str] = {}
        self._check_values()
        self._collect_secret_values()
        self._check_volumes()
        # every secret variable's key first, so the init containers find the same keys
        for name in stack.start_order():
            service = stack.service(name)
            for variable, value in self._split_environment(service)[1]:
                self.secrets.key_for(service.name, variable, value)

    # -- entry -----------------------------------------------------------------------------

    def render(self) -> Rendered:
        documents: dict[str, list[Obj]] = {}
        # Jobs first: their hashed names are what the dependents wait for.
        order = self.stack.start_order()
        for name in order:
            service = self.stack.service(name)
            if service.one_shot:
                documents[f"{name}.yaml"] = self._service_documents(service)
        for name in order:
            service = self.stack.service(name)
            if not service.one_shot:
                documents[f"{name}.yaml"] = self._service_documents(service)
        files = {name: _dump_all(HEADER, docs) for name, docs in documents.items()}
        resources = [f"{name}.yaml" for name in order]
        if self.uses_job_waiter:
            files["rbac.yaml"] = _dump_all(HEADER, self._rbac())
            resources.insert(0, "rbac.yaml")
        hint = ""
        if self.secrets.data:
            files["secret.yaml"] = _dump_all(self._secret_header(), [self._secret()])
            if self.options.secrets_from_env:
                resources.insert(0, "secret.yaml")
            else:
                hint = self._secret_hint()
        files["kustomization.yaml"] = _dump_all(HEADER, [self._kustomization(resources)])
        images = {s.name: self.image(s) for s in self.stack.services}
        self.notes.append(
            "images the cluster must pull: " + ", ".join(f"{k}={v}" for k, v in images.items())
        )
        rendered = Rendered(
            files=dict(sorted(files.items())),
            notes=tuple(self.notes),
            secret_hint=hint,
            secret_values=self.secrets.all_forms(),
        )
        self._check_no_leak(rendered)
        return rendered

    # -- checks on the declaration ------------------------------------------------------------

    def _check_values(self) -> None:
        values = [(name, value, "") for name, value in self.stack.secrets]
        for service in self.stack.services:
            values += [(n, v, f" (of {service.name})") for n, v in self._environment(service)]
        for name, value, where in values:
            found = CONTROL_CHARACTER.search(value)
            if found:
                raise NoKubernetesEquivalent(
                    f"{name}{where} holds the control character {found.group()!r}: a manifest "
                    "would not bring it to the program intact",
                    hint=f"remove it from {name} (a password keeps only its first line in initdb)",
                )

    def _collect_secret_values(self) -> None:
        # declared secrets, then variables named as secrets: their names label the values
        for name, value in self.stack.secrets:
            self.secrets.add_value(value, name)
        for service in self.stack.services:
            for name, value in self._environment(service):
                if SECRET_NAMES.search(name.upper()):
                    self.secrets.add_value(value, name)

    def _check_volumes(self) -> None:
        owners: dict[str, str] = {}
        for service in self.stack.services:
            for mount in service.mounts:
                if mount.kind != "volume":
                    continue
                if service.one_shot:
                    raise NoKubernetesEquivalent(
                        f"{service.name} is a one-shot service with the named volume "
                        f"{mount.source}: a Job has no PersistentVolumeClaim of its own",
                        hint="mount the volume in a long-running service instead",
                    )
                if mount.source in owners and owners[mount.source] != service.name:
                    raise NoKubernetesEquivalent(
                        f"{service.name} and {owners[mount.source]} share the named volume "
                        f"{mount.source}: a ReadWriteOnce claim belongs to one workload",
                        hint="give each service its own volume",
                    )
                owners[mount.source] = service.name

    def _check_no_leak(self, rendered: Rendered) -> None:
        plain = {n: t for n, t in rendered.files.items() if n != "secret.yaml"}
        plain["(the kubectl create secret hint)"] = rendered.secret_hint
        for name, text in plain.items():
            for form in rendered.secret_values:
                if form in text:
                    label = next(
                        (
                            lbl
                            for raw, lbl in self.secrets.labels.items()
                            if form in secret_forms(raw)
                        ),
                        "a secret",
                    )
                    raise NoKubernetesEquivalent(
                        f"the value of {label} also appears in plain text in {name}",
                        hint=f"choose a {label} that is not part of another setting (user "
                        "name, database name, project name)",
                    )

    # -- naming and labels ----------------------------------------------------------------------

    @property
    def instance(self) -> str:
        return _label_value(self.stack.project)

    def kind(self, service: Service) -> str:
        if service.one_shot:
            return "Job"
        if any(m.kind == "volume" for m in service.mounts):
            return "StatefulSet"
        return "Deployment"

    def component(self, service: Service) -> str:
        kind = self.kind(service)
        if kind == "Job":
            return "job"
        if kind == "StatefulSet":
            return "datastore"
        return "server" if service.ports else "worker"

    def selector(self, service: Service) -> Obj:
        return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/instance": self.instance}

    def labels(self, service: Service | None, component: str = "") -> Obj:
        labels: Obj = {}
        if service is not None:
            labels["app.kubernetes.io/name"] = service.name
        labels["app.kubernetes.io/instance"] = self.instance
        if service is not None:
            labels["app.kubernetes.io/component"] = component or self.component(service)
        labels["app.kubernetes.io/part-of"] = self.instance
        labels["app.kubernetes.io/managed-by"] = MANAGED_BY
        labels["devstack.project"] = self.instance
        return labels

    def metadata(self, name: str, service: Service | None, component: str = "") -> Obj:
        return {
            "name": name,
            "namespace": self.options.namespace,
            "labels": self.labels(service, component),
        }

    def image(self, service: Service) -> str:
        if service.build is None:
            return service.image
        return self.options.images.get(service.name, self.options.api_image)

    def _environment(self, service: Service) -> list[tuple[str, str]]:
        # DEVSTACK_* values only steer the local stack (e.g. the migration files' digest)
        merged = {k: v for k, v in service.environment if not k.startswith("DEVSTACK_")}
        merged.update(service.cluster.environment)
        return sorted(merged.items())

    # -- one service ----------------------------------------------------------------------------

    def _service_documents(self, service: Service) -> list[Obj]:
        docs: list[Obj] = []
        plain, secret = self._split_environment(service)
        if plain:
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": self.metadata(f"{service.name}-config", service),
                    "data": dict(plain),
                }
            )
        files = files_config_map(service, self.metadata(files_config_map_name(service), service))
        if files is not None:
            docs.append(files)
        if self._ports(service) and not service.one_shot:
            docs.append(self._service_object(service))
        pod = self._pod_template(service, plain, secret)
        kind = self.kind(service)
        if kind == "Job":
            docs.append(self._job(service, pod))
        elif kind == "StatefulSet":
            docs.append(self._statefulset(service, pod))
        else:
            docs.append(self._deployment(service, pod))
        metadata = self.metadata(service.name, service)
        docs.append(network_policy(self.stack, service, metadata, self.selector(service)))
        return docs

    def _split_environment(
        self, service: Service
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        plain: list[tuple[str, str]] = []
        secret: list[tuple[str, str]] = []
        for name, value in self._environment(service):
            (secret if self.secrets.is_secret(name, value) else plain).append((name, value))
        return plain, secret

    def _ports(self, service: Service) -> list[tuple[str, int]]:
        """(name, container port) for each distinct declared container port."""
        http = sorted(
            {
                self._check_port(service, check)
                for check in (service.readiness, service.liveness)
                if isinstance(check, HttpGet)
            }
        )
        named: list[tuple[str, int]] = []
        for port in sorted({p.container_port for p in service.ports}):
            if port in http:
                name = "http" if port == http[0] else f"http-{port}"
            else:
                name = f"tcp-{port}"
            named.append((name, port))
        return named + metrics_port(service, named)

    def _service_object(self, service: Service) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(service.name, service),
            "spec": {
                "type": "ClusterIP",
                "selector": self.selector(service),
                "ports": [
                    {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                    for name, port in self._ports(service)
                ],
            },
        }

    def _pod_template(
        self,
        service: Service,
        plain: list[tuple[str, str]],
        secret: list[tuple[str, str]],
    ) -> Obj:
        for mount in service.mounts:
            if mount.kind == "bind":
                self.notes.append(
                    f"{service.name}: bind mount {mount.target} dropped (dev only: the image "
                    "carries the code)"
                )
        if service.stop_signal:
            self.notes.append(
                f"{service.name}: stop signal {service.stop_signal} not rendered (the runtime "
                "sends the image's STOPSIGNAL, else SIGTERM)"
            )
        container: Obj = {"name": service.name, "image": self.image(service)}
        if service.command:
            # Docker's command is the image's CMD; Kubernetes would expand $(VAR) in it
            container["args"] = [literal(arg) for arg in service.command]
        if service.working_dir:
            container["workingDir"] = service.working_dir
        ports = self._ports(service)
        if ports:
            container["ports"] = [
                {"name": name, "containerPort": port, "protocol": "TCP"} for name, port in ports
            ]
        if plain:
            container["envFrom"] = [{"configMapRef": {"name": f"{service.name}-config"}}]
        # a secret the image reads from a file (NAME_FILE) is mounted, not in the environment
        files: list[tuple[str, str]] = []
        env: list[Obj] = []
        for name, value in secret:
            key = self.secrets.key_for(service.name, name, value)
            if name in service.cluster.secret_files:
                variable, path = secret_file_env(name)
                env.append(variable)
                files.append((key, path))
            else:
                env.append(self._secret_env(name, key))
        if env:
            container["env"] = env
        container.update(self._probes(service))
        container["resources"] = SERVER_RESOURCES
        container["securityContext"] = _container_security()
        writable = writable_dirs(service)
        mounts = [self._volume_mount(m) for m in service.mounts if m.kind == "volume"]
        mounts += [{"name": name, "mountPath": path} for name, path in writable]
        file_volumes, file_mounts = files_volume(service)
        mounts += file_mounts
        if files:
            mounts.append(
                {"name": SECRET_FILES_VOLUME, "mountPath": SECRET_FILES_DIR, "readOnly": True}
            )
        container["volumeMounts"] = mounts
        init = self._init_containers(service)
        for waiter in init:  # a read-only root filesystem: /tmp for what they write too
            tmp = {"name": writable[0][0], "mountPath": writable[0][1]}
            waiter["volumeMounts"] = [tmp, *waiter.get("volumeMounts", [])]
        # only the Job waiters mount a token (kubectl reads the API): the app gets none
        needs_token = any(
            m["name"] == "kube-api-access" for c in init for m in c.get("volumeMounts", [])
        )
        spec: Obj = {"automountServiceAccountToken": False}
        if needs_token:
            spec["serviceAccountName"] = WAITER
        spec["securityContext"] = self._pod_security(service)
        if init:
            spec["initContainers"] = init
        spec["containers"] = [container]
        if service.one_shot:
            spec["restartPolicy"] = "Never"
        volumes: list[Obj] = [_token_volume()] if needs_token else []
        volumes += [{"name": name, "emptyDir": {}} for name, _ in writable]
        volumes += file_volumes
        if files:
            group = "fsGroup" in spec["securityContext"]
            volumes.append(secret_files_volume(files, group_readable=group))
        spec["volumes"] = volumes
        metadata: Obj = {"labels": self.labels(service)}
        annotations = scrape_annotations(service)
        if service.files:  # a file mounted by subPath is not updated in place: roll the pods
            annotations["devstack/config-hash"] = _digest([plain, files_digest(service)])
        elif plain:
            annotations["devstack/config-hash"] = _digest(plain)
        if annotations:
            metadata["annotations"] = annotations
        return {"metadata": metadata, "spec": spec}

    def _volume_mount(self, mount: Mount) -> Obj:
        volume: Obj = {"name": self.volume_name(mount.source), "mountPath": mount.target}
        if mount.read_only:
            volume["readOnly"] = True
        return volume

    def volume_name(self, source: str) -> str:
        return dns_label(source.removeprefix(f"{self.stack.project}_"))

    def _secret_env(self, name: str, key: str) -> Obj:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}

    def _uid(self, service: Service) -> int | None:
        if service.cluster.uid is not None:
            return service.cluster.uid
        if service.user.isdigit():
            return int(service.user)
        if service.user:
            self.notes.append(
                f"{service.name}: user {service.user!r} is not numeric: not rendered "
                "(runAsNonRoot then needs a numeric USER in the image)"
            )
        # The same build runs as the same user.
        if service.build is None:
            return None
        shared = (o.cluster.uid for o in self.stack.services if o.build == service.build)
        return next((uid for uid in shared if uid is not None), None)

    def _pod_security(self, service: Service) -> Obj:
        security: Obj = {"runAsNonRoot": True}
        uid = self._uid(service)
        if uid is not None:
            security.update(runAsUser=uid, runAsGroup=uid)
            if any(m.kind == "volume" for m in service.mounts):
                security["fsGroup"] = uid
                # only a volume whose root has another owner is walked (not every restart)
                security["fsGroupChangePolicy"] = "OnRootMismatch"
        security["seccompProfile"] = {"type": "RuntimeDefault"}
        return security

    # -- workloads ------------------------------------------------------------------------------

    def _deployment(self, service: Service, pod: Obj) -> Obj:
        replicas = self.options.replicas if service.ports else 1
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(service.name, service),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": self.selector(service)},
                "template": pod,
            },
        }

    def _statefulset(self, service: Service, pod: Obj) -> Obj:
        # with the fields the server fills in (a claim template list is replaced as a whole
        # by `kubectl apply`: any missing one reported the StatefulSet `configured`)
        claims = [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": self.volume_name(m.source),
                    "labels": self.labels(service),
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": self.options.storage}},
                    "volumeMode": "Filesystem",
                },
                "status": {"phase": "Pending"},
            }
            for m in service.mounts
            if m.kind == "volume"
        ]
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self.metadata(service.name, service),
            "spec": {
                "serviceName": service.name,
                "replicas": 1,  # one server owns its volume: more replicas are more databases
                "selector": {"matchLabels": self.selector(service)},
                "template": pod,
                "volumeClaimTemplates": claims,
            },
        }

    def _job(self, service: Service, pod: Obj) -> Obj:
        # A Job's pod template is immutable: a new image or command is a new Job, named by
        # the hash of both. A tag names different images over time (`:latest`, a rebuilt
        # `:1.0`): the same name then skips the new image's work, so a digest is asked for.
        image = self.image(service)
        if "@" not in image:
            self.notes.append(
                f"{service.name} runs {image} by tag: a new image pushed under the same tag "
                f"keeps the Job's name, and the cluster skips it; name the image by digest "
                f"(REF@sha256:...) so each image gets its own Job"
            )
        name = dns_label(f"{service.name}-{_digest({'image': image, 'pod': pod})}")
        self.job_names[service.name] = name
        spec: Obj = {"backoffLimit": 2, "ttlSecondsAfterFinished": JOB_TTL, "template": pod}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(name, service),
            "spec": spec,
        }

    # -- shared objects -------------------------------------------------------------------------

    def _rbac(self) -> list[Obj]:
        metadata = self.metadata(WAITER, None)
        subject = {"kind": "ServiceAccount", "name": WAITER, "namespace": self.options.namespace}
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": metadata,
                "automountServiceAccountToken": False,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata,
                "rules": [
                    {
                        "apiGroups": ["batch"],
                        "resources": ["jobs"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": WAITER,
                },
                "subjects": [subject],
            },
        ]

    def _secret(self) -> Obj:
        data = dict(sorted(self.secrets.data.items()))
        if not self.options.secrets_from_env:
            data = {key: self.secrets.placeholder(value) for key, value in data.items()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self.metadata(SECRET_NAME, None),
            "type": "Opaque",
            "stringData": data,
        }

    def _secret_header(self) -> str:
        if self.options.secrets_from_env:
            return HEADER + "# Real values from .env: keep this file out of version control.\n"
        return (
            HEADER + "# PLACEHOLDERS: not listed in kustomization.yaml. Create the Secret with\n"
            "# the `kubectl create secret` line that the export printed, or fill in this\n"
            "# file and `kubectl apply -f` it.\n"
        )

    def _secret_hint(self) -> str:
        literals = " ".join(
            shlex.quote(f"--from-literal={key}={self.secrets.placeholder(value)}")
            for key, value in sorted(self.secrets.data.items())
        )
        return f"kubectl -n {self.options.namespace} create secret generic {SECRET_NAME} {literals}"

    def _kustomization(self, resources: list[str]) -> Obj:
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": self.options.namespace,
            "resources": resources,
        }
