# frozen_string_literal: true

# Sidekiq 6.4.1's client, API and Web UI, driven from the interop tests:
#
#   ruby api.rb COMMAND [JSON-ARGUMENT]
#
# prints one JSON document on stdout. The reads go through `sidekiq/api`, the code the Web UI uses;
# `web` renders a Web UI page (or presses a button) through Rack, as a browser would.
require_relative "sidekiq_env"
require "sidekiq/web"
require "rack/mock"
require "securerandom"

def record(job)
  h = {
    "jid" => job.jid, "klass" => job.klass, "display_class" => job.display_class,
    "args" => job.args, "display_args" => job.display_args, "queue" => job.queue,
    "item" => job.item, "enqueued_at" => job.enqueued_at&.to_f, "created_at" => job.created_at.to_f
  }
  if job.is_a?(Sidekiq::SortedEntry)
    h["score"] = job.score
    h["at"] = job.at.to_f
    h["error"] = job.error?
    h["error_backtrace"] = job.error_backtrace
  else
    h["latency"] = job.latency
  end
  h
end

PROCESS_FIELDS = %w[hostname started_at pid tag concurrency queues labels identity busy beat quiet rss
                    rtt_us version].freeze

def process_record(process)
  h = PROCESS_FIELDS.to_h { |k| [k, process[k]] }
  h.merge("stopping" => process.stopping?, "tag" => process.tag, "labels" => process.labels,
          "queues" => process.queues)
end

def state
  processes = Sidekiq::ProcessSet.new
  stats = Sidekiq::Stats.new
  history = Sidekiq::Stats::History.new(1)
  {
    "processes" => processes.map { |p| process_record(p) },
    "total_concurrency" => processes.total_concurrency,
    "workers" => Sidekiq::Workers.new.map do |process, tid, work|
      { "process" => process, "tid" => tid, "queue" => work["queue"], "run_at" => work["run_at"],
        "payload" => work["payload"], "job" => record(Sidekiq::JobRecord.new(work["payload"])) }
    end,
    "workers_size" => Sidekiq::Workers.new.size,
    "queues" => Sidekiq::Queue.all.map do |q|
      { "name" => q.name, "size" => q.size, "latency" => q.latency, "jobs" => q.map { |j| record(j) } }
    end,
    "stats" => {
      "processed" => stats.processed, "failed" => stats.failed, "enqueued" => stats.enqueued,
      "scheduled_size" => stats.scheduled_size, "retry_size" => stats.retry_size,
      "dead_size" => stats.dead_size, "processes_size" => stats.processes_size,
      "workers_size" => stats.workers_size, "default_queue_latency" => stats.default_queue_latency,
      "queues" => stats.queues,
      "history_processed" => history.processed, "history_failed" => history.failed
    },
    "retries" => Sidekiq::RetrySet.new.map { |e| record(e) },
    "scheduled" => Sidekiq::ScheduledSet.new.map { |e| record(e) },
    "dead" => Sidekiq::DeadSet.new.map { |e| record(e) }
  }
end

def find(set, jid)
  set.find_job(jid) or abort("no job #{jid} in #{set.name}")
end

def process(identity)
  Sidekiq::ProcessSet.new.find { |p| p.identity == identity } or abort("no process #{identity}")
end

# A Web UI request; POSTs carry a valid CSRF token, as the buttons' forms do.
def web(req)
  token = SecureRandom.base64(32)
  params = req.fetch("params", {})
  params = params.merge("authenticity_token" => token) if req["method"] == "POST"
  env = Rack::MockRequest.env_for(req["path"], method: req["method"], params: params,
                                               "rack.session" => { csrf: token })
  status, headers, body = Sidekiq::Web.call(env)
  text = +""
  body.each { |part| text << part }
  { "status" => status, "location" => headers["Location"], "body" => text.force_encoding("UTF-8") }
end

command, raw = ARGV
arg = raw && JSON.parse(raw)
result =
  case command
  when "push" then Sidekiq::Client.push(arg)
  when "push_bulk" then Sidekiq::Client.push_bulk(arg)
  when "state" then state
  when "retry_all" then Sidekiq::RetrySet.new.retry_all
  when "retry_one" then find(Sidekiq::RetrySet.new, arg).retry
  when "scheduled_add_to_queue" then find(Sidekiq::ScheduledSet.new, arg).add_to_queue
  when "dead_delete" then find(Sidekiq::DeadSet.new, arg).delete
  when "dead_retry_all" then Sidekiq::DeadSet.new.retry_all
  when "quiet" then process(arg).quiet!
  when "stop" then process(arg).stop!
  when "dump_threads" then process(arg).dump_threads
  when "web" then web(arg)
  else abort("unknown command #{command.inspect}")
  end
puts JSON.generate({ "result" => result })
