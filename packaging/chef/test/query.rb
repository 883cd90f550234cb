# Evaluates a Ruby expression over the resources render.rb recorded; exit 0 when it is true.
#   ruby query.rb OUT/resources.json 'res("service", "haproxy-watchdog")["actions"] == %w(enable start)'
require 'json'

RESOURCES = JSON.parse(File.read(ARGV.fetch(0)))

def res(type, name)
  RESOURCES.find { |r| r['type'] == type && r['name'] == name }
end

def idx(type, name)
  RESOURCES.index { |r| r['type'] == type && r['name'] == name }
end

def vars(path)
  (res('template', path) || {}).fetch('properties', {})['variables']
end

def notifies?(type, name, action, target)
  r = res(type, name)
  !r.nil? && r['notifies'].any? { |n| n['action'] == action && n['target'] == target }
end

exit(eval(ARGV.fetch(1)) ? 0 : 1) # rubocop:disable Security/Eval
