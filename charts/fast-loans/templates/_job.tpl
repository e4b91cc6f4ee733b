{{/*
A hook Job running one `fastloans` command from the gateway image.
Call with (dict "root" $ "name" "migrations" "args" (list ...) "hook" "..." "weight" "0" "backoffLimit" n "deadline" n "uses" (dict ...)).
An empty "hook" makes it an ordinary object of the release, named <name>-install (a hook of the same name
may run while it still exists): what a first install uses when the Job needs the release's own PostgreSQL or
Kafka, because post-install hooks run only after `helm install --wait` has seen every Deployment ready, and
the services are ready only once the schema and the topics exist.
*/}}
{{- define "fastloans.hookJob" -}}
{{- $root := .root -}}
{{- $gateway := include "fastloans.componentConfig" (dict "root" $root "name" "gateway") | fromYaml -}}
{{- $c := dict "uses" .uses -}}
{{- $labelCtx := dict "root" $root "component" .name }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "fastloans.fullname" $root }}-{{ .name }}{{ if not .hook }}-install{{ end }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
  {{- with .hook }}
  annotations:
    helm.sh/hook: {{ . }}
    helm.sh/hook-weight: {{ $.weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
  {{- end }}
spec:
  backoffLimit: {{ .backoffLimit }}
  activeDeadlineSeconds: {{ .deadline }}
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
        {{- include "fastloans.labels" $labelCtx | nindent 8 }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "fastloans.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- include "fastloans.imagePullSecrets" $root | nindent 6 }}
      securityContext:
        {{- include "fastloans.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: {{ include "fastloans.image" (dict "root" $root "image" $gateway.image) | quote }}
          imagePullPolicy: {{ $gateway.image.pullPolicy | default $root.Values.image.pullPolicy }}
          command: ["fastloans"]
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "fastloans.env" (dict "root" $root "c" $c "name" .name) | nindent 12 }}
          resources:
            {{- toYaml $root.Values.jobs.resources | nindent 12 }}
          securityContext:
            {{- include "fastloans.securityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "fastloans.caVolumeMounts" (dict "root" $root "c" $c) | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- include "fastloans.caVolumes" (dict "root" $root "c" $c) | nindent 8 }}
{{- end -}}
