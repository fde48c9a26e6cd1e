{{/* Chart name, overridable. */}}
{{- define "flywheel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name; the release name alone when it already contains the chart name.
Truncated to 63 characters (DNS label).
*/}}
{{- define "flywheel.fullname" -}}
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

{{- define "flywheel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "flywheel.labels" -}}
helm.sh/chart: {{ include "flywheel.chart" . }}
{{ include "flywheel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flywheel
{{- end }}

{{/* Labels that select the operator pod; immutable once installed. */}}
{{- define "flywheel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flywheel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "flywheel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flywheel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flywheel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "flywheel.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) }}
{{- end }}

{{- define "flywheel.peeringName" -}}
{{- default (include "flywheel.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The watched namespaces, deduplicated, in the given order. */}}
{{- define "flywheel.watchNamespaces" -}}
{{- toJson (uniq .Values.watchNamespaces) }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator reconciles and creates. Shared by the
ClusterRole (all namespaces) and the per-namespace Roles (watchNamespaces). No wildcards;
no access to Secrets: runtime pods mount them, the operator never reads them.
*/}}
{{- define "flywheel.namespacedRules" -}}
# The five kinds: kopf watches them and patches finalizers and its progress annotations;
# a DriftMonitor's retrain sets its ModelDeployment's spec.stable and spec.candidate.
- apiGroups: [flywheel.dev]
  resources: [datasets, featureviews, trainingjobs, modeldeployments, driftmonitors]
  verbs: [get, list, watch, patch, update]
# A DriftMonitor with action retrain creates a new TrainingJob.
- apiGroups: [flywheel.dev]
  resources: [trainingjobs]
  verbs: [create]
- apiGroups: [flywheel.dev]
  resources:
    - datasets/status
    - featureviews/status
    - trainingjobs/status
    - modeldeployments/status
    - driftmonitors/status
  verbs: [get, patch, update]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: [flywheel.dev]
  resources:
    - datasets/finalizers
    - featureviews/finalizers
    - trainingjobs/finalizers
    - modeldeployments/finalizers
    - driftmonitors/finalizers
  verbs: [update]
# Children: ingest/materialization/drift Jobs and CronJobs, Triton and router Deployments.
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
# The Triton path's router reads its own ConfigMap through the API server, as its own
# ServiceAccount bound to a Role limited to that ConfigMap.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch, update, delete]
# The Triton path's router keeps one replica up through voluntary disruptions.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
# Read-only: results of runtime pods come back as their termination messages.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# KubeRay children: training RayJobs and serving RayServices.
- apiGroups: [ray.io]
  resources: [rayjobs, rayservices]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [ray.io]
  resources: [rayjobs/status, rayservices/status]
  verbs: [get]
{{- end }}

{{/* Cluster-scoped reads, needed in both modes. */}}
{{- define "flywheel.clusterRules" -}}
# Whether KubeRay (ray.io) is installed; missing CRDs become a condition, not a crash.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
# kopf's namespace scanning.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
