{{/* Names and labels shared by every template. */}}

{{- define "secgroup-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secgroup-operator.fullname" -}}
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

{{- define "secgroup-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secgroup-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secgroup-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "secgroup-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: secgroup-operator
{{- end }}

{{- define "secgroup-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "secgroup-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "secgroup-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces whose Secrets the operator reads: the release namespace unless set. */}}
{{- define "secgroup-operator.secretNamespaces" -}}
{{- $namespaces := .Values.secretNamespaces | default (list .Release.Namespace) }}
{{- $namespaces | uniq | toJson }}
{{- end }}

{{/* Leader election: on with more than one replica, or when forced. Prints "true" or nothing. */}}
{{- define "secgroup-operator.leaderElection" -}}
{{- if or .Values.leaderElection.force (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The RoleBinding/ClusterRoleBinding subject: the operator's ServiceAccount. */}}
{{- define "secgroup-operator.subjects" -}}
subjects:
  - kind: ServiceAccount
    name: {{ include "secgroup-operator.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}

{{/* Rights on SecurityGroupRules and their Events: cluster-wide, or in watchNamespace. */}}
{{- define "secgroup-operator.ruleRights" -}}
# list/watch: the informer; patch: the finalizer (a JSON patch). No get,
# create, update or delete. No securitygrouprules/finalizers either: the
# operator sets no ownerReferences.
- apiGroups: [secgroup.dev]
  resources: [securitygrouprules]
  verbs: [list, watch, patch]
# Status is written with server-side apply, a patch.
- apiGroups: [secgroup.dev]
  resources: [securitygrouprules/status]
  verbs: [patch]
# Events on rules; repeated events are patched into a series.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
