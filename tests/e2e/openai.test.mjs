// The official openai client against `ferry serve` on stories260K: what a
// user of the SDK does, and the SDK's own error classes for bad requests.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startServer } from './ferry_server.mjs';

const MODEL = 'stories260K.gguf';
// llama.cpp's greedy continuation of "Once upon a time", 20 tokens.
const GREEDY = ', there was a little girl named Lily. She loved to play outsid';

let server;
let client;

before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: server.baseURL, apiKey: 'not-needed', maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  assert.equal(await server.stop(), 0);
});

test('models.list names the served model', async () => {
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === MODEL));
  const one = await client.models.retrieve(MODEL);
  assert.equal(one.id, MODEL);
});

test('a greedy completion matches llama.cpp', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, GREEDY);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.prompt_tokens, 5);
  assert.equal(r.usage.completion_tokens, 20);
  assert.equal(r.usage.total_tokens, 25);
});

test('a streamed completion gives the same text, then usage', async () => {
  const stream = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 20, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, GREEDY);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 20);
});

test('chat completions, whole and streamed', async () => {
  const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }];
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 5);
  const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, stream: true });
  let role = null;
  let content = '';
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    const delta = chunk.choices[0]?.delta ?? {};
    if (delta.role) role = delta.role;
    content += delta.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(content, r.choices[0].message.content);
});

test('n > 1 gives indexed choices, streamed too', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 8, n: 3, seed: 1 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, n: 2, stream: true,
  });
  const finished = new Set();
  for await (const chunk of stream) {
    for (const c of chunk.choices) if (c.finish_reason) finished.add(c.index);
  }
  assert.deepEqual([...finished].sort(), [0, 1]);
});

test('logprobs for completions and chat', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 5);
  assert.equal(lp.token_logprobs.length, 5);
  assert.ok(lp.token_logprobs.every((v) => v <= 0));
  assert.ok(Object.keys(lp.top_logprobs[0]).length >= 1);
  assert.equal(lp.tokens.join(''), r.choices[0].text);
  const c = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, logprobs: true, top_logprobs: 3,
  });
  const content = c.choices[0].logprobs.content;
  assert.ok(content.length >= 1);
  for (const t of content) {
    assert.equal(typeof t.token, 'string');
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 3);
  }
});

test('stop strings end the text before them', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 40, temperature: 0, stop: ['Lily'] });
  assert.equal(r.choices[0].text, ', there was a little girl named ');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('the same seed gives the same sample', async () => {
  const ask = (seed) => client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 24, temperature: 1, seed });
  const [a, b, c] = await Promise.all([ask(42), ask(42), ask(43)]);
  assert.equal(a.choices[0].text, b.choices[0].text);
  assert.notEqual(a.choices[0].text, c.choices[0].text);
});

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 10 },
    age: { type: 'integer', minimum: 0 },
    pet: { type: 'string', enum: ['cat', 'dog'] },
  },
  required: ['name', 'age', 'pet'],
  additionalProperties: false,
};

test('response_format json_schema gives JSON that matches the schema', async () => {
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Tell me about a person.' }], max_tokens: 100,
      temperature: 0.8, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } },
    });
    assert.equal(r.choices[0].finish_reason, 'stop');
    const person = JSON.parse(r.choices[0].message.content);
    assert.deepEqual(Object.keys(person), ['name', 'age', 'pet']);
    assert.equal(typeof person.name, 'string');
    assert.ok(Number.isInteger(person.age) && person.age >= 0);
    assert.ok(['cat', 'dog'].includes(person.pet));
  }
  const c = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 60, temperature: 0,
    response_format: { type: 'json_object' },
  });
  if (c.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(c.choices[0].text), 'object');
});

test('a forced tool call comes back as tool_calls, whole and streamed', async () => {
  const tools = [{
    type: 'function',
    function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'] } },
  }];
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], max_tokens: 60, temperature: 0, tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const call = r.choices[0].message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  const args = JSON.parse(call.function.arguments);
  assert.ok(['c', 'f'].includes(args.unit));
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], max_tokens: 60, temperature: 0, tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, stream: true,
  });
  let name = null;
  let streamed = '';
  for await (const chunk of stream) {
    for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) {
      if (tc.function?.name) name = tc.function.name;
      streamed += tc.function?.arguments ?? '';
    }
  }
  assert.equal(name, 'get_weather');
  assert.deepEqual(JSON.parse(streamed), args);
  const required = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], max_tokens: 100, temperature: 0, tools,
    tool_choice: 'required',
  });
  if (required.choices[0].finish_reason === 'tool_calls') {
    assert.equal(required.choices[0].message.tool_calls[0].function.name, 'get_weather');
  }
  // Streamed, the calls merge in the SDK's own stream helper into the same message.
  const merged = await client.beta.chat.completions.stream({
    model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], max_tokens: 100, temperature: 0, tools,
    tool_choice: 'required',
  }).finalChatCompletion();
  assert.equal(merged.choices[0].finish_reason, required.choices[0].finish_reason);
  if (required.choices[0].finish_reason === 'tool_calls') {
    const want = required.choices[0].message.tool_calls;
    const got = merged.choices[0].message.tool_calls;
    assert.equal(got.length, want.length);
    for (let i = 0; i < want.length; i++) {
      assert.equal(got[i].type, 'function');
      assert.match(got[i].id, /^call_/);
      assert.equal(got[i].function.name, want[i].function.name);
      assert.deepEqual(JSON.parse(got[i].function.arguments), JSON.parse(want[i].function.arguments));
    }
  }
  await assert.rejects(
    client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'x' }], tools,
      tool_choice: { type: 'function', function: { name: 'nope' } },
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tool_choice',
  );
  await assert.rejects(
    client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'strin' } } },
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format' && /strin/.test(e.message),
  );
});

test('the Responses API: output_text, the SDK stream helper and function calls', async () => {
  const r = await client.responses.create({ model: MODEL, input: 'Once upon a time', max_output_tokens: 12, temperature: 0 });
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'incomplete');
  assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.ok(r.output_text.length > 0);
  assert.equal(r.usage.output_tokens, 12);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + 12);
  // The stream helper checks every event against what it has accumulated.
  const stream = client.responses.stream({ model: MODEL, input: 'Once upon a time', max_output_tokens: 12, temperature: 0 });
  let deltas = '';
  const types = [];
  stream.on('response.output_text.delta', (e) => { deltas += e.delta; });
  let last = null;
  stream.on('event', (e) => { types.push(e.type); last = e; });
  const final = await stream.finalResponse();
  // (this SDK's stream helper leaves output_text unset; the parts hold it)
  const text = final.output.filter((o) => o.type === 'message').flatMap((o) => o.content).map((c) => c.text).join('');
  assert.equal(text, r.output_text);
  // A response cut by max_output_tokens ends with response.incomplete (this
  // SDK takes its final snapshot from response.completed only).
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.incomplete');
  assert.equal(deltas, r.output_text);
  assert.equal(last.response.usage.output_tokens, 12);
  assert.equal(last.response.status, 'incomplete');

  const tools = [{
    type: 'function', name: 'get_weather', strict: true,
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'] },
  }];
  const ask = {
    model: MODEL, instructions: 'Call tools.', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Weather?' }] }],
    tools, tool_choice: { type: 'function', name: 'get_weather' }, max_output_tokens: 60, temperature: 0,
  };
  const called = await client.responses.create(ask);
  const item = called.output.find((o) => o.type === 'function_call');
  assert.ok(item, JSON.stringify(called.output));
  assert.equal(item.name, 'get_weather');
  assert.match(item.call_id, /^call_/);
  const args = JSON.parse(item.arguments);
  assert.ok(['c', 'f'].includes(args.unit));
  const streamed = await client.responses.stream(ask).finalResponse();
  const streamedItem = streamed.output.find((o) => o.type === 'function_call');
  assert.equal(streamedItem.name, 'get_weather');
  assert.deepEqual(JSON.parse(streamedItem.arguments), args);

  await assert.rejects(
    client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_1' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'previous_response_id',
  );
  await assert.rejects(
    client.responses.create({ model: MODEL, input: 'x', tools: [{ type: 'web_search_preview' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tools',
  );
});

test("Anthropic's SDK: messages, the stream helper, tool use and its errors", async () => {
  const anthropic = new Anthropic({ baseURL: `http://127.0.0.1:${server.port}`, apiKey: 'not-needed', maxRetries: 0 });
  const msg = await anthropic.messages.create({
    model: MODEL, max_tokens: 12, temperature: 0, system: 'Tell stories.', messages: [{ role: 'user', content: 'Once upon a time' }],
  });
  assert.match(msg.id, /^msg_/);
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.content[0].type, 'text');
  assert.ok(msg.content[0].text.length > 0);
  assert.equal(msg.stop_reason, 'max_tokens');
  assert.equal(msg.usage.output_tokens, 12);
  // The stream helper checks each delta against the block it belongs to.
  const stream = anthropic.messages.stream({
    model: MODEL, max_tokens: 12, temperature: 0, system: 'Tell stories.', messages: [{ role: 'user', content: 'Once upon a time' }],
  });
  let text = '';
  stream.on('text', (t) => { text += t; });
  const final = await stream.finalMessage();
  assert.equal(final.content[0].text, msg.content[0].text);
  assert.equal(text, msg.content[0].text);
  assert.equal(final.stop_reason, 'max_tokens');
  assert.equal(final.usage.output_tokens, 12);
  assert.equal(final.usage.input_tokens, msg.usage.input_tokens);
  const counted = await anthropic.messages.countTokens({
    model: MODEL, system: 'Tell stories.', messages: [{ role: 'user', content: 'Once upon a time' }],
  });
  assert.equal(counted.input_tokens, msg.usage.input_tokens);

  const tools = [{ name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'] } }];
  const ask = { model: MODEL, max_tokens: 60, temperature: 0, tools, tool_choice: { type: 'tool', name: 'get_weather' }, messages: [{ role: 'user', content: 'Weather?' }] };
  const called = await anthropic.messages.create(ask);
  const use = called.content.find((b) => b.type === 'tool_use');
  assert.ok(use, JSON.stringify(called.content));
  assert.equal(use.name, 'get_weather');
  assert.ok(['c', 'f'].includes(use.input.unit));
  const streamed = await anthropic.messages.stream(ask).finalMessage();
  assert.deepEqual(streamed.content.find((b) => b.type === 'tool_use').input, use.input);

  await assert.rejects(
    anthropic.messages.create({ model: MODEL, max_tokens: 5, messages: [], temperature: 0 }),
    (e) => e instanceof Anthropic.BadRequestError && e.status === 400 && e.error?.error?.type === 'invalid_request_error',
  );
  await assert.rejects(
    anthropic.messages.create({ model: 'claude-nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.NotFoundError,
  );
});

test('bad requests raise the SDK error classes', async () => {
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: 'x', temperature: -1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature',
  );
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 100000 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded' && /100000/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages',
  );
  await assert.rejects(
    client.completions.create({ model: 'gpt-4', prompt: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404,
  );
  await assert.rejects(client.models.retrieve('gpt-4'), (e) => e instanceof OpenAI.NotFoundError);
});

test('API keys: the SDK key is checked', async () => {
  const keyed = await startServer(['--api-key', 'sk-e2e-secret']);
  try {
    const wrong = new OpenAI({ baseURL: keyed.baseURL, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
    const right = new OpenAI({ baseURL: keyed.baseURL, apiKey: 'sk-e2e-secret', maxRetries: 0 });
    const r = await right.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  } finally {
    assert.equal(await keyed.stop(), 0);
  }
});
