module HaproxyWatchdog
  # Resolves the node's attributes into the values the templates need. Everything is checked
  # here, before any resource runs, so a missing EIP or topic fails the run with nothing changed.
  module Settings
    PROVIDERS = %w(ec2 opsworks).freeze

    def self.resolve(node)
      a = node['haproxy_watchdog']
      provider = a['provider'].to_s.strip
      unless PROVIDERS.include?(provider)
        fail!("provider #{provider.inspect} is not supported: set node['haproxy_watchdog']['provider'] to \"ec2\" or \"opsworks\"")
      end

      eip = first(a['eip'], dig(node, 'stack', 'primary_ip'))
      fail!("no Elastic IP: set \"primary_ip\" in the stack's custom JSON ({\"stack\": {\"primary_ip\": \"203.0.113.10\"}}) or node['haproxy_watchdog']['eip']") unless eip

      topic = first(a['topic_arn'], dig(node, 'stack', 'failover_topic'))
      fail!("no SNS topic for failover alerts: set \"failover_topic\" in the stack's custom JSON ({\"stack\": {\"failover_topic\": \"arn:aws:sns:...\"}}) or node['haproxy_watchdog']['topic_arn']") unless topic

      instance_id = first(a['opsworks_instance_id'], dig(node, 'opsworks', 'instance', 'id'))
      if provider == 'opsworks' && instance_id.nil?
        fail!("provider \"opsworks\" needs this node's OpsWorks instance id (node['opsworks']['instance']['id'], set by OpsWorks, or node['haproxy_watchdog']['opsworks_instance_id']); outside OpsWorks use provider \"ec2\"")
      end

      scheme = a['check_scheme'].to_s
      fail!("check_scheme #{scheme.inspect}: use \"http\" or \"https\"") unless %w(http https).include?(scheme)
      port = int(a['check_port'], 'check_port', 65_535)
      path = a['check_path'].to_s
      path = "/#{path}" unless path.start_with?('/')

      {
        :provider => provider,
        :eip => eip,
        :topic_arn => topic,
        # nil: the daemon takes it from AWS_REGION or instance metadata.
        :region => first(a['region'], dig(node, 'opsworks', 'instance', 'region')),
        :opsworks_instance_id => provider == 'opsworks' ? instance_id : nil,
        :opsworks_api_region => first(a['opsworks_api_region']) || 'us-east-1',
        :check_url => "#{scheme}://#{eip}:#{port}#{path}",
        :check_host => first(a['check_host']),
        :interval => a['interval'].to_s,
        :timeout => a['timeout'].to_s,
        :fail_after => int(a['fail_after'], 'fail_after'),
        :recover_after => int(a['recover_after'], 'recover_after'),
        :hold_down => a['hold_down'].to_s,
        :checkip_url => a['checkip_url'].to_s,
        :stats_socket => a['stats_socket'].to_s,
        :haproxy_backend => first(a['haproxy_backend']),
        :local_haproxy_alert => flag(a['local_haproxy_alert']),
        :remove_monit => flag(a['remove_monit'])
      }
    end

    # node['a']['b'] without NoMethodError when 'a' is missing (no Hash#dig before Ruby 2.3).
    def self.dig(node, *keys)
      keys.reduce(node) do |cur, key|
        return nil if cur.nil? || cur.is_a?(String) || !cur.respond_to?(:[])
        cur[key]
      end
    end

    # The first value that is set and not blank, as a stripped string.
    def self.first(*values)
      values.each do |v|
        s = v.to_s.strip
        return s unless v.nil? || s.empty?
      end
      nil
    end

    def self.int(value, name, max = nil)
      n = Integer(value.to_s, 10)
      raise ArgumentError if n < 1 || (max && n > max)
      n
    rescue ArgumentError
      fail!("#{name} = #{value.inspect}: not a whole number from 1#{max ? " to #{max}" : ''}")
    end

    def self.flag(value)
      value == true || value.to_s == 'true'
    end

    def self.fail!(message)
      raise "haproxy_watchdog: #{message}"
    end
  end
end
