{{/* Chart name. */}}
{{- define "stockflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name; service resources are "<fullname>-<service>". */}}
{{- define "stockflow.fullname" -}}
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

{{- define "stockflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stockflow.labels" -}}
helm.sh/chart: {{ include "stockflow.chart" . }}
{{ include "stockflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stockflow
{{- end -}}

{{- define "stockflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Name of one service's resources. Call with (dict "root" $ "service" "stock"). */}}
{{- define "stockflow.serviceName" -}}
{{- printf "%s-%s" (include "stockflow.fullname" .root) .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stockflow.serviceSelectorLabels" -}}
{{ include "stockflow.selectorLabels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "stockflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "stockflow.secretName" -}}
{{- default (printf "%s-secrets" (include "stockflow.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "stockflow.configName" -}}
{{- printf "%s-config" (include "stockflow.fullname" .) -}}
{{- end -}}

{{- define "stockflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stockflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret key of a role's password, e.g. stock_app -> STOCKFLOW_DB_PASSWORD_STOCK_APP. */}}
{{- define "stockflow.passwordKey" -}}
{{- printf "STOCKFLOW_DB_PASSWORD_%s" (upper .) -}}
{{- end -}}

{{/* Every database role: <schema>_owner and <schema>_app for each enabled service. */}}
{{- define "stockflow.roles" -}}
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}
- {{ $svc.schema }}_owner
- {{ $svc.schema }}_app
{{- end }}
{{- end }}
{{- end -}}

{{/* postgresql://USER:$(PASSWORD_ENV)@host:port/db?params — the password is expanded by the
     kubelet from an env var defined earlier in the same container. */}}
{{- define "stockflow.databaseUrl" -}}
{{- $db := .root.Values.database -}}
{{- $url := printf "postgresql://%s:$(%s)@%s:%v/%s" .user .passwordEnv $db.host $db.port $db.name -}}
{{- if $db.params }}{{ $url }}?{{ $db.params }}{{ else }}{{ $url }}{{ end -}}
{{- end -}}

{{/* Every Kafka principal (stockflow.runtime.security): each service and kafka.sasl.extraPrincipals.
     All services, enabled or not: the init Job creates the whole access table. */}}
{{- define "stockflow.kafkaPrincipals" -}}
{{- range $name, $svc := .Values.services }}
- {{ $name }}
{{- end }}
{{- range .Values.kafka.sasl.extraPrincipals }}
- {{ . }}
{{- end }}
{{- end -}}

{{/* Secret key of a Kafka principal's password, e.g. stock -> STOCKFLOW_KAFKA_PASSWORD_STOCK. */}}
{{- define "stockflow.kafkaPasswordKey" -}}
{{- printf "STOCKFLOW_KAFKA_PASSWORD_%s" (upper .) -}}
{{- end -}}

{{/* Every process that gets a Deployment and a Service, by name: the enabled services and the
     enabled workers of enabled services. Each: service, schema, replicas, resources, env, and
     worker (true for a worker). Read with (include "stockflow.processes" . | fromYaml). */}}
{{- define "stockflow.processes" -}}
{{- $processes := dict }}
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}
{{- $_ := set $processes $name (dict "service" $name "schema" $svc.schema "replicas" $svc.replicas "resources" $svc.resources "env" $svc.env "worker" false) }}
{{- end }}
{{- end }}
{{- range $name, $worker := .Values.workers }}
{{- $svc := required (printf "workers.%s.service must name a service" $name) (get $.Values.services $worker.service) }}
{{- if and $worker.enabled $svc.enabled }}
{{- $_ := set $processes $name (dict "service" $worker.service "schema" $svc.schema "replicas" $worker.replicas "resources" $worker.resources "env" $worker.env "worker" true) }}
{{- end }}
{{- end }}
{{- toYaml $processes }}
{{- end -}}
