{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, truncated to 63 characters (the DNS-1123 label limit).
*/}}
{{- define "shelf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name: release-chart, or the release name alone when it already contains the
chart name. Truncated to 63 characters.
*/}}
{{- define "shelf.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of a component's resources: fullname-component (component: api, gateway, reconciler,
migration). Usage: include "shelf.componentName" (dict "context" $ "component" "api")
*/}}
{{- define "shelf.componentName" -}}
{{- printf "%s-%s" (include "shelf.fullname" .context | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "shelf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Namespace of every resource.
*/}}
{{- define "shelf.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "shelf.labels" -}}
helm.sh/chart: {{ include "shelf.chart" . }}
{{ include "shelf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shelf
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels shared by all components: they never change across upgrades.
*/}}
{{- define "shelf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shelf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of one component. Usage: include "shelf.componentLabels" (dict "context" $ "component" "api")
*/}}
{{- define "shelf.componentLabels" -}}
{{ include "shelf.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Selector labels of one component (Deployment selectors, Services, PDBs, anti-affinity).
*/}}
{{- define "shelf.componentSelectorLabels" -}}
{{ include "shelf.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Common annotations, rendered as a block (empty when there are none).
*/}}
{{- define "shelf.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{/*
Name of the ServiceAccount of the api, gateway and reconciler pods.
*/}}
{{- define "shelf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shelf.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Image reference: repository@digest, or repository:tag (tag defaults to the appVersion).
*/}}
{{- define "shelf.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Name of the Secret holding database URL, tokens, secret key and S3 credentials.
*/}}
{{- define "shelf.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- tpl .Values.secrets.existingSecret . -}}
{{- else -}}
{{- include "shelf.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
Name of the ConfigMap holding the non-secret SHELF_* settings.
*/}}
{{- define "shelf.configMapName" -}}
{{- printf "%s-config" (include "shelf.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/*
The HMAC key: the value given, else the one already stored in the release's Secret (so that
upgrades keep it), else a new random one. All gateway replicas read it from the same Secret.
*/}}
{{- define "shelf.secretKey" -}}
{{- if .Values.secrets.secretKey -}}
{{- .Values.secrets.secretKey -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" (include "shelf.namespace" .) (include "shelf.fullname" .) -}}
{{- $key := .Values.secrets.existingSecretKeys.secretKey -}}
{{- if and $existing (hasKey ($existing.data | default dict) $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 64 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Refuse to render a deployment that cannot start: checked by every template that runs Shelf.
*/}}
{{- define "shelf.validateValues" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if not .Values.secrets.tokens -}}
{{- fail "\n\nshelf: API tokens are required. The API refuses to listen on a pod address without tokens.\nSet secrets.tokens (a list of {name, role, token}) or secrets.existingSecret (a Secret holding the keys in secrets.existingSecretKeys).\nSee docs/deployment.md, 'Tokens and secrets'." -}}
{{- end -}}
{{- if not .Values.secrets.databaseUrl -}}
{{- fail "\n\nshelf: a PostgreSQL database is required. Set secrets.databaseUrl (postgresql://user:password@host:5432/shelf) or secrets.existingSecret." -}}
{{- end -}}
{{- end -}}
{{- if not .Values.config.artifactUri -}}
{{- fail "\n\nshelf: an artifact store is required. Set config.artifactUri to s3://bucket/prefix (and config.s3.endpointUrl for MinIO or another S3-compatible store)." -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (lt (int .Values.gateway.autoscaling.maxReplicas) (int .Values.gateway.autoscaling.minReplicas)) -}}
{{- fail "\n\nshelf: gateway.autoscaling.maxReplicas must be at least gateway.autoscaling.minReplicas." -}}
{{- end -}}
{{- end -}}

{{/*
Pod anti-affinity preset. Usage:
include "shelf.podAntiAffinity" (dict "context" $ "component" "api" "preset" .Values.api.podAntiAffinityPreset)
*/}}
{{- define "shelf.podAntiAffinity" -}}
{{- if eq .preset "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "shelf.componentSelectorLabels" (dict "context" .context "component" .component) | nindent 12 }}
{{- else if eq .preset "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "shelf.componentSelectorLabels" (dict "context" .context "component" .component) | nindent 10 }}
{{- end }}
{{- end -}}

{{/*
An HTTP probe on the named port. Usage: include "shelf.probe" (dict "probe" .Values.api.livenessProbe "path" "/healthz")
*/}}
{{- define "shelf.probe" -}}
httpGet:
  path: {{ .path }}
  port: http
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
successThreshold: {{ .probe.successThreshold }}
{{- end -}}

{{/*
Environment shared by every Shelf container: secrets by reference, the pod name as replica id.
Usage: include "shelf.env" (dict "context" $ "tokens" true)
*/}}
{{- define "shelf.env" -}}
{{- $ctx := .context -}}
{{- $secret := include "shelf.secretName" $ctx -}}
{{- $keys := $ctx.Values.secrets.existingSecretKeys -}}
- name: SHELF_REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SHELF_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.databaseUrl }}
- name: SHELF_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.secretKey }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.awsAccessKeyId }}
      optional: true
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.awsSecretAccessKey }}
      optional: true
{{- if .tokens }}
- name: SHELF_TOKENS_FILE
  value: /etc/shelf/tokens/tokens.json
{{- end }}
{{- end -}}

{{/*
Volumes shared by every Shelf pod: writable SHELF_HOME and /tmp on a read-only root filesystem.
*/}}
{{- define "shelf.volumes" -}}
- name: home
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "shelf.volumeMounts" -}}
- name: home
  mountPath: {{ .Values.config.home }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/*
Pod annotations that roll the pods when the settings or secrets change.
*/}}
{{- define "shelf.checksumAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ .Values.secrets | toJson | sha256sum }}
{{- end }}
{{- end -}}
