# frozen_string_literal: true

# Ruby job classes for the real Sidekiq server (`sidekiq -r <this file>`), run by the interop tests.
# Each writes what it received to $INTEROP_OUT/<Class>-<jid>.json (written aside, then renamed).
require_relative "sidekiq_env"

# Move due retries and scheduled jobs quickly (6.4.1 waits 10-15 s before its first poll otherwise).
Sidekiq.options[:poll_interval_average] = 0.5

def record(klass, jid, args)
  out = ENV.fetch("INTEROP_OUT")
  tmp = File.join(out, ".#{klass}-#{jid}.tmp")
  File.write(tmp, JSON.generate({ "class" => klass, "jid" => jid, "args" => args }))
  File.rename(tmp, File.join(out, "#{klass}-#{jid}.json"))
end

class RubyWorker
  include Sidekiq::Worker

  def perform(*args)
    record("RubyWorker", jid, args)
  end
end

# Fails the way the Python FailingJob does (same message), to compare what each leaves in `dead`.
class FailWorker
  include Sidekiq::Worker

  def perform(*_args)
    raise ArgumentError, "boom"
  end
end
