# Runs the haproxy_watchdog cookbook without Chef: loads its libraries and attributes, merges
# custom JSON over them, evaluates a recipe in a fake DSL that records resources instead of
# acting, then renders the templates (and applies file deletions) under --out, which stands
# for /etc/haproxy-watchdog.
#
#   ruby render.rb --cookbook DIR --out DIR [--json FILE]... [--recipe setup] [--platform-family debian]
#
# Writes OUT/resources.json (every resource in declaration order). Exits 1 with the error on
# stderr when the cookbook raises (a missing EIP, an unknown provider, ...).
require 'erb'
require 'fileutils'
require 'json'
require 'optparse'

# Stand-in for Chef::Config, the one Chef constant the recipe reads.
module Chef
  Config = { :file_cache_path => '/var/chef/cache' }.freeze
end

module FakeChef
  ETC = '/etc/haproxy-watchdog'.freeze

  # `default['a']['b'] = v` in attribute files: reads create missing levels, keys are strings.
  class VividMash < Hash
    def [](key)
      key = key.to_s
      store(key, VividMash.new) unless key?(key)
      super(key)
    end

    def []=(key, value)
      super(key.to_s, value)
    end
  end

  # Merged attributes as recipes read them: symbol or string keys, nil when missing.
  class Mash < Hash
    def self.from(value)
      return value unless value.is_a?(Hash)
      value.each_with_object(new) { |(k, v), m| m.store(k.to_s, from(v)) }
    end

    def [](key)
      super(key.to_s)
    end

    def key?(key)
      super(key.to_s)
    end
  end

  def self.plain(value)
    return value unless value.is_a?(Hash)
    value.each_with_object({}) { |(k, v), h| h[k.to_s] = plain(v) }
  end

  def self.deep_merge(base, over)
    return over unless base.is_a?(Hash) && over.is_a?(Hash)
    base.merge(over) { |_k, a, b| deep_merge(a, b) }
  end

  class Node
    attr_reader :default

    def initialize
      @default = VividMash.new
      @attrs = Mash.new
    end

    def node
      self
    end

    def merge!(hash)
      @attrs = Mash.from(FakeChef.deep_merge(FakeChef.plain(@attrs), FakeChef.plain(hash)))
    end

    def [](key)
      @attrs[key]
    end
  end

  # The properties each resource type may set: a misspelt one fails here as it would in Chef.
  RESOURCES = {
    'package' => [:install, %w(package_name version options)],
    'dpkg_package' => [:install, %w(package_name source version options)],
    'rpm_package' => [:install, %w(package_name source version options)],
    'remote_file' => [:create, %w(path source mode owner group checksum)],
    'directory' => [:create, %w(path owner group mode recursive)],
    'template' => [:create, %w(path source owner group mode variables cookbook)],
    'file' => [:create, %w(path owner group mode content)],
    'execute' => [:run, %w(command user group cwd environment creates returns)],
    'service' => [:nothing, %w(service_name supports)],
    'log' => [:write, %w(message level)]
  }.freeze

  class Resource
    attr_reader :type, :name

    def initialize(type, name, node)
      @type = type
      @name = name
      @node = node
      @actions = [RESOURCES.fetch(type)[0].to_s]
      @props = {}
      @notifies = []
    end

    def id
      "#{type}[#{name}]"
    end

    def node
      @node
    end

    def action(*actions)
      @actions = actions.flatten.map(&:to_s)
    end

    def notifies(action, target, timing = :delayed)
      @notifies << { 'action' => action.to_s, 'target' => target, 'timing' => timing.to_s }
    end

    def only_if(*)
      raise "#{id}: only_if is not modelled by this test harness"
    end
    alias not_if only_if

    def method_missing(prop, *args, &block)
      allowed = RESOURCES.fetch(type)[1]
      return super unless allowed.include?(prop.to_s)
      raise ArgumentError, "#{id}: #{prop} takes one value" unless args.size == 1 && block.nil?
      @props[prop.to_s] = args[0]
    end

    def respond_to_missing?(prop, include_private = false)
      RESOURCES.fetch(type)[1].include?(prop.to_s) || super
    end

    def props
      @props
    end

    def actions
      @actions
    end

    def to_h
      { 'type' => type, 'name' => name, 'id' => id, 'actions' => @actions,
        'properties' => @props, 'notifies' => @notifies }
    end

    def notifications
      @notifies
    end
  end

  class Recipe
    attr_reader :resources

    def initialize(cookbook, node)
      @cookbook = cookbook
      @node = node
      @resources = []
    end

    def node
      @node
    end

    RESOURCES.each_key do |type|
      define_method(type) do |name, &block|
        r = Resource.new(type, name, @node)
        r.instance_eval(&block) if block
        @resources << r
        r
      end
    end

    def include_recipe(spec)
      cookbook, recipe = spec.split('::', 2)
      raise "include_recipe #{spec}: only this cookbook is available here" unless cookbook == 'haproxy_watchdog'
      run(recipe || 'default')
    end

    def run(recipe)
      path = File.join(@cookbook, 'recipes', "#{recipe}.rb")
      instance_eval(File.read(path), path, 1)
    end
  end

  # Template context: only the passed variables, no `node`, so a template that reaches into
  # node attributes fails here.
  class TemplateContext
    def initialize(vars)
      vars.each { |k, v| instance_variable_set("@#{k}", v) }
    end

    def render(src, path)
      erb = ERB.new(src, trim_mode: '-')
      erb.filename = path
      erb.result(binding)
    end
  end

  def self.render(cookbook, resource)
    src_name = resource.props['source'] or raise "#{resource.id}: no source"
    path = File.join(cookbook, 'templates', 'default', src_name)
    src = File.read(path)
    vars = resource.props['variables'] || {}
    used = src.scan(/@([a-z_][a-z0-9_]*)/).flatten.uniq
    missing = used - vars.keys.map(&:to_s)
    raise "#{resource.id}: template uses #{missing.map { |v| "@#{v}" }.join(', ')} but variables() does not pass it" unless missing.empty?
    TemplateContext.new(vars).render(src, path)
  end

  def self.local_path(out, path)
    return nil unless path.start_with?("#{ETC}/")
    File.join(out, path.sub("#{ETC}/", ''))
  end
end

opts = { :json => [], :recipe => 'setup', :platform_family => 'debian' }
OptionParser.new do |o|
  o.on('--cookbook DIR') { |v| opts[:cookbook] = v }
  o.on('--out DIR') { |v| opts[:out] = v }
  o.on('--json FILE') { |v| opts[:json] << v }
  o.on('--recipe NAME') { |v| opts[:recipe] = v }
  o.on('--platform-family NAME') { |v| opts[:platform_family] = v }
end.parse!
abort 'usage: render.rb --cookbook DIR --out DIR [--json FILE]...' unless opts[:cookbook] && opts[:out]

begin
  Dir[File.join(opts[:cookbook], 'libraries', '*.rb')].sort.each { |f| load File.expand_path(f) }
  node = FakeChef::Node.new
  Dir[File.join(opts[:cookbook], 'attributes', '*.rb')].sort.each do |f|
    node.instance_eval(File.read(f), f, 1)
  end
  node.merge!(node.default)
  node.merge!('platform_family' => opts[:platform_family])
  opts[:json].each { |f| node.merge!(JSON.parse(File.read(f))) }

  recipe = FakeChef::Recipe.new(opts[:cookbook], node)
  recipe.run(opts[:recipe])
  resources = recipe.resources

  ids = resources.map(&:id)
  dup = ids.select { |id| ids.count(id) > 1 }.uniq
  raise "resources declared twice: #{dup.join(', ')}" unless dup.empty?
  resources.each do |r|
    r.notifications.each do |n|
      raise "#{r.id} notifies #{n['target']}, which is not declared" unless ids.include?(n['target'])
    end
  end

  FileUtils.mkdir_p(File.join(opts[:out], 'conf.d'))
  resources.each do |r|
    local = FakeChef.local_path(opts[:out], r.props['path'] || r.name)
    next unless local
    if r.type == 'template' && r.actions.include?('create')
      File.write(local, FakeChef.render(opts[:cookbook], r))
    elsif r.type == 'file' && r.actions.include?('delete')
      FileUtils.rm_f(local)
    end
  end
  File.write(File.join(opts[:out], 'resources.json'), JSON.pretty_generate(resources.map(&:to_h)))
rescue StandardError, ScriptError => e
  warn "error: #{e.message}"
  exit 1
end
