{{/* Names, labels and the operator's RBAC rules. */}}

{{- define "stockade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release> when it contains the chart name, else <release>-<chart>. */}}
{{- define "stockade.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stockade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stockade.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stockade.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stockade
{{- end }}

{{- define "stockade.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stockade.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stockade.image" -}}
{{- $image := .Values.image }}
{{- if not $image.repository }}
{{- fail "image.repository is not set. No Stockade image is published yet: build one from the repository's Dockerfile (docs/install.md, \"The operator image\"), push it to a registry your nodes pull from, and install with --set image.repository=<registry>/stockade (and image.tag or image.digest)." }}
{{- end }}
{{- $registry := default $image.registry ((.Values.global | default dict).imageRegistry) }}
{{- $repository := $image.repository }}
{{- if $registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}{{ end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* name=quantity pairs, comma-separated, sorted by name (STOCKADE_DEFAULT_REQUESTS). */}}
{{- define "stockade.resourceList" -}}
{{- $pairs := list }}
{{- range $name, $quantity := . }}
{{- $pairs = append $pairs (printf "%s=%v" $name $quantity) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* key=value pairs, comma-separated, sorted by key (STOCKADE_EGRESS_DNS_POD_LABELS). */}}
{{- define "stockade.pairs" -}}
{{- include "stockade.resourceList" . }}
{{- end }}

{{/* The namespaces that get a ResourceQuota / LimitRange. */}}
{{- define "stockade.agentNamespaces" -}}
{{- $namespaces := .Values.agentNamespaces.namespaces | default .Values.watchNamespaces }}
{{- toJson (dict "items" $namespaces) }}
{{- end }}

{{- define "stockade.checks" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs the namespaces to watch in watchNamespaces (a Role is created in each)" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled=true (otherwise every replica would write)" }}
{{- end }}
{{- $le := .Values.leaderElection }}
{{- if and $le.enabled (not (and (gt (float64 $le.leaseDurationSeconds) (float64 $le.renewDeadlineSeconds)) (gt (float64 $le.renewDeadlineSeconds) (mulf 1.2 $le.retryPeriodSeconds)))) }}
{{- fail "leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > 1.2 x retryPeriodSeconds" }}
{{- end }}
{{- end }}

{{/* The leader-election Lease: one per release, in the release namespace. */}}
{{- define "stockade.leaseName" -}}
{{- include "stockade.fullname" . }}
{{- end }}

{{/*
The operator's permissions: exactly the API calls it makes (see docs/security.md, "RBAC: least privilege").
The same rules become a ClusterRole (rbac.scope=cluster) or a Role per watched
namespace (rbac.scope=namespaced). Nothing on Secrets, no pods/exec, no cluster-scoped
resources: kopf runs standalone (no peering), with posting and resource/namespace
scanning disabled, so it needs nothing of its own.
*/}}
{{- define "stockade.rules" -}}
# Agents: kopf lists and watches them (an index and an event handler); `delete` is the
# ttlSecondsAfterFinished clean-up; `patch` sets a member Agent's ownerReference to its
# AgentSession (so deleting a session garbage-collects its agents).
- apiGroups: [stockade.dev]
  resources: [agents]
  verbs: [get, list, watch, patch, delete]
# The status subresource: one merge patch per change of an Agent's status.
- apiGroups: [stockade.dev]
  resources: [agents/status]
  verbs: [patch]
# AgentSessions: watched for admission; `delete` is the session's TTL clean-up.
- apiGroups: [stockade.dev]
  resources: [agentsessions]
  verbs: [get, list, watch, delete]
- apiGroups: [stockade.dev]
  resources: [agentsessions/status]
  verbs: [patch]
{{- if .Values.rbac.ownerReferencesPermissionEnforcement }}
# Children with blockOwnerDeletion under the OwnerReferencesPermissionEnforcement plugin.
- apiGroups: [stockade.dev]
  resources: [agents/finalizers, agentsessions/finalizers]
  verbs: [update]
{{- end }}
# Agent pods: watched (server-side label selector), read once when the watch lags
# behind a create, created per attempt, deleted on retry, suspend and deadline.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
# The inputs an agent pod mounts (task and config): watched (server-side label
# selector) and read on a name conflict to check the owner UID; created, and put back
# (`update`) when someone edits them; deleted by the garbage collector, or by the
# operator (UID precondition) when an own ConfigMap cannot be put back (immutable).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, delete]
# The workspace volume: watched, read on a conflict, created (again, if deleted while
# the Agent lives). Never updated: a claim's spec is immutable.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, create]
# One Event per phase transition, on the Agent.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# The egress policy of each agent pod: watched, read on a conflict, created, restored.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, update]
{{- end }}

{{/* The ValidatingAdmissionPolicy and its binding (one name, cluster-scoped). */}}
{{- define "stockade.admissionPolicyName" -}}
{{- printf "%s-references" (include "stockade.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The egress gateway (issue 21): its names and address. */}}
{{- define "stockade.gatewayName" -}}
{{- printf "%s-gateway" (include "stockade.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stockade.gatewayCaSecret" -}}
{{- default (printf "%s-ca" (include "stockade.gatewayName" .)) .Values.gateway.caSecretName }}
{{- end }}

{{- define "stockade.gatewayCaConfigMap" -}}
{{- default (printf "%s-ca" (include "stockade.gatewayName" .)) .Values.gateway.caConfigMapName }}
{{- end }}

{{- define "stockade.gatewayAddress" -}}
{{- printf "%s.%s.svc:3128" (include "stockade.gatewayName" .) .Release.Namespace }}
{{- end }}

{{/* The gateway pods' labels: not the operator's selector labels (its Deployment and
Service select app.kubernetes.io/name=<chart name>). */}}
{{- define "stockade.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "stockade.name" . }}-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}
