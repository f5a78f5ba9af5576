# frozen_string_literal: true

# Shared set-up of the interop scripts: Debian's Sidekiq 6.4.1 on the Redis the test started.
# The test passes that Redis as INTEROP_REDIS_URL (a unix:///... or redis://... URL).
require "sidekiq"
require "sidekiq/api"
require "json"

# redis-rb 4.8 prints a deprecation warning for every BRPOP Sidekiq 6.4.1 sends.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

INTEROP_REDIS = { url: ENV.fetch("INTEROP_REDIS_URL") }.freeze
Sidekiq.configure_client { |config| config.redis = INTEROP_REDIS }
Sidekiq.configure_server { |config| config.redis = INTEROP_REDIS }
# Scripts print JSON on stdout: Sidekiq's own log lines go to stderr.
Sidekiq.logger = Sidekiq::Logger.new($stderr)
