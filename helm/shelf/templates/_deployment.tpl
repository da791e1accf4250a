{{/*
One Deployment of a Shelf role. Usage:
  include "shelf.deployment" (dict "context" $ "component" "api" "values" .Values.api "args" (list "api") "tokens" true "replicas" true)
*/}}
{{- define "shelf.deployment" -}}
{{- $ctx := .context -}}
{{- $v := .values -}}
{{- $component := .component -}}
{{- $names := dict "context" $ctx "component" $component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "shelf.componentName" $names }}
  namespace: {{ include "shelf.namespace" $ctx }}
  labels:
    {{- include "shelf.componentLabels" $names | nindent 4 }}
  {{- with $ctx.Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if .replicas }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ $v.revisionHistoryLimit }}
  {{- with $v.updateStrategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "shelf.componentSelectorLabels" $names | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "shelf.componentLabels" $names | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "shelf.checksumAnnotations" $ctx | nindent 8 }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "shelf.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ $ctx.Values.serviceAccount.automountServiceAccountToken }}
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      enableServiceLinks: false
      securityContext:
        {{- toYaml $ctx.Values.podSecurityContext | nindent 8 }}
      {{- if $v.affinity }}
      affinity:
        {{- toYaml $v.affinity | nindent 8 }}
      {{- else if ne $v.podAntiAffinityPreset "none" }}
      affinity:
        {{- include "shelf.podAntiAffinity" (dict "context" $ctx "component" $component "preset" $v.podAntiAffinityPreset) | trim | nindent 8 }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $component }}
          image: {{ include "shelf.image" $ctx | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $v.containerPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "shelf.configMapName" $ctx }}
          env:
            {{- include "shelf.env" (dict "context" $ctx "tokens" .tokens) | nindent 12 }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if $v.startupProbe.enabled }}
          startupProbe:
            {{- include "shelf.probe" (dict "probe" $v.startupProbe "path" "/healthz") | nindent 12 }}
          {{- end }}
          {{- if $v.livenessProbe.enabled }}
          livenessProbe:
            {{- include "shelf.probe" (dict "probe" $v.livenessProbe "path" "/healthz") | nindent 12 }}
          {{- end }}
          {{- if $v.readinessProbe.enabled }}
          readinessProbe:
            {{- include "shelf.probe" (dict "probe" $v.readinessProbe "path" "/readyz") | nindent 12 }}
          {{- end }}
          {{- if gt (int ($v.preStopSleepSeconds | default 0)) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ $v.preStopSleepSeconds | quote }}]
          {{- end }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $ctx.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "shelf.volumeMounts" $ctx | nindent 12 }}
            {{- if .tokens }}
            - name: tokens
              mountPath: /etc/shelf/tokens
              readOnly: true
            {{- end }}
      volumes:
        {{- include "shelf.volumes" $ctx | nindent 8 }}
        {{- if .tokens }}
        - name: tokens
          secret:
            secretName: {{ include "shelf.secretName" $ctx }}
            defaultMode: 0440
            items:
              - key: {{ $ctx.Values.secrets.existingSecretKeys.tokens }}
                path: tokens.json
        {{- end }}
{{- end -}}

{{/*
One PodDisruptionBudget. Usage: include "shelf.pdb" (dict "context" $ "component" "api" "values" .Values.api)
*/}}
{{- define "shelf.pdb" -}}
{{- $names := dict "context" .context "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "shelf.componentName" $names }}
  namespace: {{ include "shelf.namespace" .context }}
  labels:
    {{- include "shelf.componentLabels" $names | nindent 4 }}
  {{- with .context.Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  minAvailable: {{ .values.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "shelf.componentSelectorLabels" $names | nindent 6 }}
{{- end -}}

{{/*
One Service. Usage: include "shelf.service" (dict "context" $ "component" "api" "service" .Values.api.service)
*/}}
{{- define "shelf.service" -}}
{{- $names := dict "context" .context "component" .component -}}
{{- $type := .service.type | default "ClusterIP" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "shelf.componentName" $names }}
  namespace: {{ include "shelf.namespace" .context }}
  labels:
    {{- include "shelf.componentLabels" $names | nindent 4 }}
  {{- $annotations := merge (dict) (.service.annotations | default dict) (.context.Values.commonAnnotations | default dict) }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $type }}
  ports:
    - name: http
      port: {{ .service.port }}
      targetPort: http
      protocol: TCP
      {{- if and (has $type (list "NodePort" "LoadBalancer")) .service.nodePort }}
      nodePort: {{ .service.nodePort }}
      {{- end }}
  selector:
    {{- include "shelf.componentSelectorLabels" $names | nindent 4 }}
{{- end -}}

{{/*
One Ingress. Usage: include "shelf.ingress" (dict "context" $ "component" "api" "ingress" .Values.api.ingress "port" .Values.api.service.port)
*/}}
{{- define "shelf.ingress" -}}
{{- $names := dict "context" .context "component" .component -}}
{{- $serviceName := include "shelf.componentName" $names -}}
{{- $port := .port -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ $serviceName }}
  namespace: {{ include "shelf.namespace" .context }}
  labels:
    {{- include "shelf.componentLabels" $names | nindent 4 }}
  {{- $annotations := merge (dict) (.ingress.annotations | default dict) (.context.Values.commonAnnotations | default dict) }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with .ingress.tls }}
  tls:
    {{- range . }}
    - hosts:
        {{- range .hosts }}
        - {{ . | quote }}
        {{- end }}
      {{- with .secretName }}
      secretName: {{ . }}
      {{- end }}
    {{- end }}
  {{- end }}
  rules:
    {{- range .ingress.hosts }}
    - {{- if .host }}
      host: {{ .host | quote }}
      {{- end }}
      http:
        paths:
          {{- range .paths }}
          - path: {{ .path }}
            pathType: {{ .pathType | default "Prefix" }}
            backend:
              service:
                name: {{ $serviceName }}
                port:
                  number: {{ $port }}
          {{- end }}
    {{- end }}
{{- end -}}
